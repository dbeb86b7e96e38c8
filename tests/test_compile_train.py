"""The training script of a compiled file: `python model.py` trains as `netdsl run` does.

The compiled file is run in a fresh interpreter (`--json`), `netdsl run` in this one, from the
same seed; their histories, test metrics, best epochs and messages must be equal (wall-clock
seconds aside). Synthetic and inline data always; the seed MLP on real MNIST when
../shared/data (or NETDSL_DATA_ROOT) is there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mnist_data import DATA
from test_compile import ROOT

import netdsl
from netdsl.runtime.runner import run
from netdsl.targets.compile import compile_spec

CORPUS = Path(__file__).parent / "compile_corpus"


def run_script(file: Path, *args: str, cwd: Path) -> dict:
    r = subprocess.run([sys.executable, str(file), "--json", "--device", "cpu", *args], cwd=cwd,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def run_netdsl(path: Path, model: str | None, tmp_path: Path, **settings) -> dict:
    from netdsl.runtime.overrides import literal_setting

    overrides = [literal_setting(k.replace("__", "."), v, f"--{k}") for k, v in settings.items()]
    overrides.append(literal_setting("device", "cpu", "--device"))
    return run(netdsl.load(path), model, overrides, out=tmp_path / "runs", progress=False)


def same_result(script: dict, ours: dict) -> None:
    def history(r):
        return [{k: v for k, v in rec.items() if k != "seconds"} for rec in r["history"]]

    assert history(script) == history(ours)
    for key in ("status", "message", "epochs", "steps", "best", "test"):
        assert script[key] == ours[key], key


def compiled_file(path: Path, tmp_path: Path, **kw) -> Path:
    file = tmp_path / f"{path.stem}.py"
    file.write_text(compile_spec(path, **kw), encoding="utf-8")
    return file


def history(result: dict) -> list:
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in result["history"]]


def written_out(file: Path) -> bool:
    """Whether the compiled file holds a script of its own (not the inlined runtime)."""
    text = file.read_text(encoding="utf-8")
    return "def train_one_epoch(" in text and "netdsl/runtime/loop.py" not in text


@pytest.mark.parametrize("model", ["Conv", "Reg"])
def test_compiled_script_trains_like_netdsl_run(model, tmp_path):
    """Two models with plans in one file (synthetic data, a scheduler, early stopping, best
    checkpoints, dropout and batch norm): `--model` picks one (the file inlines the runtime)."""
    path = CORPUS / "trained.net"
    file = compiled_file(path, tmp_path)
    assert not written_out(file)
    got = run_script(file, "--model", model, "--out", str(tmp_path / "out"), cwd=tmp_path)
    same_result(got, run_netdsl(path, model, tmp_path))
    assert (tmp_path / "out" / "weights.pt").exists()
    assert (tmp_path / "out" / "checkpoints").is_dir()


@pytest.mark.parametrize("path,model", [
    (CORPUS / "trained.net", "Conv"),  # label smoothing, OneCycleLR, early stopping, top-5
    (CORPUS / "trained.net", "Reg"),  # StepLR, gradient clipping, regression
    (CORPUS / "straight.net", "Two"),  # two terms, binary, rmse, warmup, drop_last, keep all
    (ROOT / "specs" / "image_and_table.net", None),  # two inputs, two outputs
], ids=["Conv", "Reg", "Two", "image_and_table"])
def test_the_written_out_script_trains_like_netdsl_run(path, model, tmp_path):
    """One model's plan compiles to a script of its own, which gives netdsl run's histories,
    test metrics and best epochs bit for bit."""
    file = compiled_file(path, tmp_path, model=model)
    assert written_out(file)
    got = run_script(file, "--out", str(tmp_path / "out"), cwd=tmp_path)
    same_result(got, run_netdsl(path, model, tmp_path))
    assert (tmp_path / "out" / "weights.pt").exists()


def test_a_lone_weighted_term_weighs_the_loss_not_its_metrics(tmp_path):
    """`loss = 2.0 * MSELoss(...)`: train.loss is twice the mean squared error, as in
    netdsl run; the mae beside it is the plain one."""
    path = tmp_path / "w.net"
    path.write_text("model M {\n input x: [2]\n x -> Linear(1) -> y\n output y\n}\n"
                    "train M {\n data = synthetic(shape=[2], target_shape=1, n=64, n_test=16)\n"
                    " loss = 2.0 * MSELoss(y, target)\n metrics = [mae]\n batch_size = 16\n"
                    " epochs = 2\n}\n", encoding="utf-8")
    file = compiled_file(path, tmp_path)
    assert written_out(file)
    got = run_script(file, "--out", str(tmp_path / "out"), cwd=tmp_path)
    same_result(got, run_netdsl(path, None, tmp_path))


def test_the_written_out_script_resumes_from_its_own_checkpoints(tmp_path):
    """epoch_002.pt of a 4-epoch run (keep="all", every=2) continues to the same end: the
    optimizer, the scheduler, warmup, dropout's draws and the data order all pick up."""
    path = CORPUS / "straight.net"
    file = compiled_file(path, tmp_path)
    whole = run_script(file, "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == [
        "best.pt", "epoch_002.pt", "epoch_004.pt", "last.pt"]
    resumed = run_script(file, "--out", str(tmp_path / "b"), "--resume",
                         str(tmp_path / "a" / "checkpoints" / "epoch_002.pt"), cwd=tmp_path)
    assert history(resumed) == history(whole)
    for key in ("status", "epochs", "steps", "best", "test"):
        assert resumed[key] == whole[key], key


def test_overrides_and_resume(tmp_path):
    """--epochs and --seed change the run as in `netdsl run`; --resume continues from a
    checkpoint to the same end as one long run."""
    path = ROOT / "specs" / "linear_regression.net"
    file = compiled_file(path, tmp_path)
    got = run_script(file, "--epochs", "30", "--seed", "3", "--out", str(tmp_path / "a"),
                     cwd=tmp_path)
    same_result(got, run_netdsl(path, None, tmp_path, epochs=30, seed=3))
    assert got["epochs"] == 30
    run_script(file, "--epochs", "10", "--seed", "3", "--out", str(tmp_path / "b"), cwd=tmp_path)
    resumed = run_script(file, "--epochs", "30", "--seed", "3", "--out", str(tmp_path / "b"),
                         "--resume", str(tmp_path / "b" / "checkpoints" / "last.pt"), cwd=tmp_path)
    assert history(resumed) == history(got) and resumed["test"] == got["test"]


def test_plain_output_and_help(tmp_path):
    path = CORPUS / "trained.net"
    file = compiled_file(path, tmp_path)
    r = subprocess.run([sys.executable, str(file), "--model", "Reg", "--epochs", "1", "--device",
                        "cpu", "--out", str(tmp_path / "o")], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("training Reg (146 parameters) on cpu: train 64, test 16 samples")
    assert lines[1].startswith("epoch 1/1  train.loss ")
    assert lines[-2].startswith("test.loss ") and "test.mae" in lines[-2]
    assert lines[-1] == f"best train.loss {float(lines[1].split()[3]):.4f} at epoch 1"
    h = subprocess.run([sys.executable, str(file), "--help"], capture_output=True, text=True)
    for option in ("--model {Conv,Reg}", "--epochs", "--device", "--data-root", "--seed", "--out",
                   "--resume", "--json"):
        assert option in h.stdout


def test_plain_output_and_help_of_a_written_out_script(tmp_path):
    file = compiled_file(CORPUS / "trained.net", tmp_path, model="Reg")
    r = subprocess.run([sys.executable, str(file), "--epochs", "1", "--device", "cpu", "--out",
                        str(tmp_path / "o")], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "training Reg (146 parameters) on cpu: train 64, test 16 samples"
    assert lines[1].startswith("epoch 1/1  train.loss ")
    assert lines[-2].startswith("test.loss ") and "test.mae" in lines[-2]
    assert lines[-1] == f"best train.loss {float(lines[1].split()[3]):.4f} at epoch 1"
    h = subprocess.run([sys.executable, str(file), "--help"], capture_output=True, text=True)
    for option in ("--epochs", "--device", "--seed", "--out", "--resume", "--json"):
        assert option in h.stdout
    assert "[--model" not in h.stdout and "--data-root" not in h.stdout  # one model, no files


def test_missing_data_is_a_message_not_a_traceback(tmp_path):
    file = compiled_file(ROOT / "specs" / "mlp.net", tmp_path)
    r = subprocess.run([sys.executable, str(file), "--data-root", str(tmp_path / "nowhere"),
                        "--device", "cpu"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "MNIST").is_dir(), reason=f"no MNIST under {DATA}")
@pytest.mark.parametrize("name,epochs", [("mlp", 1), ("mnist", 2)])
def test_compiled_seed_spec_trains_on_mnist_like_netdsl_run(name, epochs, tmp_path):
    """The real images through torchvision's MNIST; mnist.net adds a held-out val split,
    OneCycleLR, early stopping and best checkpoints."""
    path = ROOT / "specs" / f"{name}.net"
    file = compiled_file(path, tmp_path)
    assert written_out(file)
    got = run_script(file, "--epochs", str(epochs), "--data-root", str(DATA), "--out",
                     str(tmp_path / "out"), cwd=tmp_path)
    ours = run_netdsl(path, None, tmp_path, epochs=epochs, data__root=str(DATA))
    same_result(got, ours)
    assert got["test"]["test.accuracy"] > 0.8


def test_a_model_without_a_plan_compiles_to_classes(tmp_path):
    path = CORPUS / "blocks.net"
    assert "def main(" not in compile_spec(path)
    with pytest.raises(netdsl.NetdslError) as e:
        compile_spec(path, train=True)
    assert e.value.diagnostics[0].code == "E401"
    src = compile_spec(CORPUS / "trained.net", model="Reg")
    assert "def train_one_epoch(" in src and "class Conv(nn.Module)" not in src
    assert '"--model"' not in src and "PLAN = {" not in src


def test_class_names_the_training_code_uses_are_renamed(tmp_path):
    text = "model Diverged {\n input x: [2]\n x -> Linear(1) -> y\n output y\n}\n" \
           "train Diverged {\n data = synthetic(shape=[2], target_shape=1)\n loss = MSELoss(y, target)\n}\n"
    src = compile_spec(netdsl.loads(text, "t.net"))
    assert "class Diverged_(nn.Module)" in src and "class Diverged(Exception)" in src
    assert "model = Diverged_().to(args.device)" in src
    file = tmp_path / "t.py"
    file.write_text(src, encoding="utf-8")
    assert run_script(file, "--epochs", "1", "--out", str(tmp_path / "o"), cwd=tmp_path)["epochs"] == 1
    # the inlined runtime's names (accumulate is not written out yet)
    text = text.replace("Diverged", "Trainer").replace("loss =", "accumulate = 2\n loss =")
    spec = netdsl.loads(text, "t.net")
    src = compile_spec(spec)
    assert "class Trainer_(nn.Module)" in src and "class Trainer:" in src
    assert re.search(r"fit\(\s*Trainer_,\s*data,", src)
    assert "class Trainer_(nn.Module)" in compile_spec(spec, train=False)  # as the live module
    assert type(spec.build()).__name__ == "Trainer_"


def test_a_written_out_script_refuses_torchrun_with_the_way_out(tmp_path):
    """It trains in one process; several would each train the whole model and write the
    same files, so under torchrun (WORLD_SIZE > 1) it stops before anything runs."""
    file = compiled_file(ROOT / "specs" / "linear_regression.net", tmp_path)
    r = subprocess.run([sys.executable, str(file), "--out", str(tmp_path / "o")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "WORLD_SIZE": "2"})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "`distributed = Distributed()`" in r.stderr and not (tmp_path / "o").exists()
