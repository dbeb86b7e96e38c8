"""`netdsl run` / `netdsl eval` and the loop behind them, on small synthetic data: the run
folder, --json, exact resume, Ctrl-C, atomic checkpoints, divergence, eval, and the loop
against a plain PyTorch loop written out by hand."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.cli import main
from netdsl.runtime import loop, runner
from netdsl.runtime.catalog import LOSSES, OPTIMIZERS, SCHEDULERS
from netdsl.runtime.data import load_data
from netdsl.runtime.overrides import literal_setting

NET = """\
model Net {
  input x: [8]
  x -> Linear(16) -> ReLU -> Dropout(0.2) -> Linear(3) -> logits
  output logits
}
train Net {
  data = synthetic(shape=8, num_classes=3, n=256, n_test=64, val=32)
  batch_size = 16
  epochs = 3
  optimizer = SGD(lr=0.1, momentum=0.9)
  scheduler = StepLR(step_size=1, gamma=0.5)
  seed = 3
}
"""

REG = """\
model Reg {
  input x: [4]
  x -> Linear(8) -> ReLU -> Linear(2) -> y
  output y
}
train Reg {
  data = synthetic(shape=4, target_shape=2, n=128, n_test=32)
  loss = MSELoss(y, target)
  optimizer = SGD(lr=0.05)
  epochs = 2
  batch_size = 16
}
"""


@pytest.fixture
def spec_file(tmp_path):
    def make(text: str = NET, name: str = "net.net"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return make


def _weights(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _strip(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "seconds"}


class Quiet(loop.Progress):
    def start(self, info):
        pass

    def epoch_end(self, record, epochs):
        pass


# ---- the run folder and the result -----------------------------------------------------------
def test_run_folder_holds_everything_and_result_json_matches(spec_file, tmp_path):
    path = spec_file()
    r = runner.run(netdsl.load(path), out=tmp_path / "runs", progress=False)
    folder = tmp_path / "runs" / os.path.basename(r["run_dir"])
    assert folder.name.startswith("Net-") and r["status"] == "completed"
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*")}
    assert {"spec.net", "plan.json", "metrics.jsonl", "weights.pt", "curves.png", "result.json",
            "checkpoints", "checkpoints/last.pt", "checkpoints/best.pt"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert (folder / "spec.net").read_text() == NET
    assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert lines == json.loads(json.dumps(r["history"]))
    assert [x["epoch"] for x in lines] == [1, 2, 3]
    assert json.loads((folder / "result.json").read_text()) == json.loads(json.dumps(r))
    plan = json.loads((folder / "plan.json").read_text())
    assert plan["settings"]["optimizer"] == {"name": "SGD", "kwargs": {"lr": 0.1, "momentum": 0.9}}
    assert [h["lr"] for h in r["history"]] == [0.1, 0.05, 0.025]  # each epoch's lr (StepLR)
    weights = torch.load(folder / "weights.pt", weights_only=True)
    assert _same(weights, _weights(r.model))
    assert set(r["test"]) == {"test.loss", "test.accuracy"} and r["test"]["test.accuracy"] > 0.6


def test_json_output(spec_file, tmp_path, capsys):
    main(["run", str(spec_file()), "--json", "--out", str(tmp_path), "--epochs", "2"])
    out = capsys.readouterr()
    r = json.loads(out.out)
    assert {"spec", "model", "run_dir", "device", "status", "message", "epochs", "steps",
            "seconds", "final", "best", "test", "history", "checkpoint", "parameters", "data",
            "files", "notes"} <= set(r)
    assert r["status"] == "completed" and r["epochs"] == 2 and r["steps"] == 2 * 14
    assert r["data"] == {"source": "synthetic", "train": 224, "val": 32, "test": 64}
    assert r["best"]["monitor"] == "val.loss" and r["parameters"] == 8 * 16 + 16 + 16 * 3 + 3
    assert "epoch 1/2" in out.err  # progress goes to stderr with --json


def test_plain_progress_lines_on_stdout(spec_file, tmp_path, capsys):
    main(["run", str(spec_file()), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "plan for Net" in out and "optimizer   SGD(lr=0.1, momentum=0.9)" in out
    assert out.count("\nepoch ") == 3 and "test.accuracy" in out and "run folder:" in out


# ---- exact resume ----------------------------------------------------------------------------
def _interrupt_at(monkeypatch, where):
    """Make the run's progress raise KeyboardInterrupt at (epoch, step) (step None: epoch end)."""
    p = runner.RunProgress
    start, step, end = p.start, p.step, p.epoch_end

    def on_start(self, info):
        start(self, info)
        self.every = 1

    def on_step(self, epoch, k, steps, stats):
        step(self, epoch, k, steps, stats)
        if (epoch, k) == where:
            raise KeyboardInterrupt

    def on_end(self, record, epochs):
        end(self, record, epochs)
        if (record["epoch"], None) == where:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner.RunProgress, "start", on_start)
    monkeypatch.setattr(runner.RunProgress, "step", on_step)
    monkeypatch.setattr(runner.RunProgress, "epoch_end", on_end)


@pytest.mark.parametrize("where", [(1, None), (2, 5), (3, 13)], ids=["epoch1", "mid2", "end3"])
def test_resume_is_bit_exact(spec_file, tmp_path, monkeypatch, where):
    spec = netdsl.load(spec_file())
    whole = runner.run(spec, out=tmp_path / "a", progress=False)
    with monkeypatch.context() as m:
        _interrupt_at(m, where)
        with pytest.raises(loop.TrainingInterrupted) as exc:
            runner.run(spec, out=tmp_path / "b", progress=False)
    r = exc.value.result
    assert r["status"] == "interrupted" and r["checkpoint"].endswith("interrupted.pt")
    done = where[0] if where[1] is None else where[0] - 1
    assert r["epochs"] == done and len(r["history"]) == done
    resumed = runner.run(spec, resume=r["run_dir"], progress=False)
    assert resumed["run_dir"] == r["run_dir"]  # continues in the same folder
    assert _same(_weights(resumed.model), _weights(whole.model))
    assert [_strip(h) for h in resumed["history"]] == [_strip(h) for h in whole["history"]]
    assert resumed["test"] == whole["test"]
    folder = tmp_path / "b" / os.path.basename(r["run_dir"])
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 3
    assert not (folder / "checkpoints" / "interrupted.pt").exists()  # superseded by last.pt


def test_ctrl_c_stops_after_the_current_step_and_resumes_exactly(spec_file, tmp_path, monkeypatch):
    spec = netdsl.load(spec_file())
    whole = runner.run(spec, out=tmp_path / "a", progress=False)
    step = runner.RunProgress.step
    messages = []

    def on_step(self, epoch, k, steps, stats):
        step(self, epoch, k, steps, stats)
        if (epoch, k) == (2, 3):
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    with monkeypatch.context() as m:
        start = runner.RunProgress.start
        m.setattr(runner.RunProgress, "start", lambda self, info: (start(self, info),
                                                                     setattr(self, "every", 1)))
        m.setattr(runner.RunProgress, "step", on_step)
        m.setattr(runner.RunProgress, "message", lambda self, text: messages.append(text))
        with pytest.raises(loop.TrainingInterrupted) as exc:
            runner.run(spec, out=tmp_path / "b", progress=True)
    assert "Ctrl-C again" in " ".join(messages)
    assert exc.value.result["message"] == "interrupted at epoch 2, step 4 of 14"
    resumed = runner.run(spec, resume=exc.value.checkpoint, progress=False)
    assert _same(_weights(resumed.model), _weights(whole.model))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_cli_interrupt_exits_130_and_says_how_to_resume(spec_file, tmp_path, monkeypatch, capsys):
    _interrupt_at(monkeypatch, (1, None))
    path = spec_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(path), "--out", str(tmp_path)])
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted at epoch 2, step 0 of 14" in err and "interrupted.pt" in err
    assert f"resume with: netdsl run {path} --resume {tmp_path}" in err


def test_resume_from_a_checkpoint_of_another_model_is_refused(spec_file, tmp_path):
    r = runner.run(netdsl.load(spec_file()), out=tmp_path, progress=False)
    other = netdsl.load(spec_file(NET.replace("Linear(16)", "Linear(17)"), "other.net"))
    with pytest.raises(netdsl.NetdslError) as exc:
        runner.run(other, resume=r["run_dir"], progress=False)
    assert exc.value.diagnostics[0].code == "E409"
    assert "fc1.weight [16, 8] (model: [17, 8])" in str(exc.value)


def test_resuming_a_one_cycle_run_with_more_epochs_says_why_it_cannot(spec_file, tmp_path):
    text = NET.replace("StepLR(step_size=1, gamma=0.5)", "OneCycleLR(max_lr=0.1)")
    path = spec_file(text)
    r = runner.run(netdsl.load(path), out=tmp_path, progress=False)
    more = [literal_setting("epochs", 5, "--epochs")]
    with pytest.raises(netdsl.NetdslError) as exc:
        runner.run(netdsl.load(path), None, more, resume=r["run_dir"], progress=False)
    d = exc.value.diagnostics[0]
    assert d.code == "E409" and "OneCycleLR planned its schedule over the checkpoint's 3 epoch(s)" in d.message
    assert "resume with --epochs 3" in d.hint
    assert not list(Path(r["run_dir"]).glob("*.resumed-*"))  # refused before writing anything
    # with its length written out, the schedule continues
    fixed = spec_file(text.replace("max_lr=0.1", "max_lr=0.1, total_steps=100"), "fixed.net")
    r = runner.run(netdsl.load(fixed), out=tmp_path, progress=False)
    again = runner.run(netdsl.load(fixed), None, more, resume=r["run_dir"], progress=False)
    assert again["epochs"] == 5


def test_a_run_that_fails_leaves_no_half_written_folder(spec_file, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(loop, "fit", broken)
    with pytest.raises(RuntimeError, match="boom"):
        runner.run(netdsl.load(spec_file()), out=tmp_path / "runs", progress=False)
    assert not list((tmp_path / "runs").iterdir())


# ---- checkpoints -----------------------------------------------------------------------------
def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck" / "last.pt"
    good = {"format": loop.CHECKPOINT_FORMAT, "version": 1, "w": torch.arange(5.0)}
    loop.save_checkpoint(str(path), good)
    real_save = torch.save

    def dies_halfway(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError):
        loop.save_checkpoint(str(path), {**good, "w": torch.zeros(5)})
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(loop.load_checkpoint(str(path))["w"], torch.arange(5.0))
    assert os.listdir(path.parent) == ["last.pt"]
    with pytest.raises(ValueError, match="not a netdsl checkpoint"):
        torch.save({"w": 1}, tmp_path / "plain.pt")
        loop.load_checkpoint(str(tmp_path / "plain.pt"))


def test_keep_all_and_every(spec_file, tmp_path):
    text = NET.replace("  seed = 3", '  seed = 3\n  checkpoint = Checkpoint(every=2, keep="all")')
    r = runner.run(netdsl.load(spec_file(text)), out=tmp_path, progress=False)
    names = sorted(os.listdir(os.path.join(r["run_dir"], "checkpoints")))
    assert names == ["best.pt", "epoch_002.pt", "epoch_003.pt", "last.pt"]  # every 2, and the last
    last = loop.load_checkpoint(os.path.join(r["run_dir"], "checkpoints", "last.pt"))
    assert last["epoch"] == 3 and last["step"] == 0 and last["settings"]["epochs"] == 3


# ---- divergence, devices ---------------------------------------------------------------------
def test_a_nan_loss_stops_with_a_message(spec_file, tmp_path, capsys):
    path = spec_file(REG.replace("SGD(lr=0.05)", "SGD(lr=50)"), "reg.net")
    r = runner.run(netdsl.load(path), out=tmp_path, progress=False)
    assert r["status"] == "diverged" and r["history"] == []
    assert r["message"].startswith("the loss became nan at epoch 1, step ")
    assert "weights" not in r["files"] and "metrics" not in r["files"]
    assert not os.path.exists(os.path.join(r["run_dir"], "metrics.jsonl"))  # not an empty one
    assert json.load(open(os.path.join(r["run_dir"], "result.json")))["status"] == "diverged"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(path), "--out", str(tmp_path)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "reg.net:9:22: error[E408]: training diverged: the loss became nan" in err
    assert "lower optimizer.lr or set clip_grad_norm = 1.0" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_auto_falls_back_and_says_so(spec_file, tmp_path):
    r = runner.run(netdsl.load(spec_file()), out=tmp_path, progress=False)
    assert r["device"] == "cpu"
    assert "note: device auto: no CUDA or MPS device found, using the cpu" in r["notes"]
    with pytest.raises(netdsl.NetdslError) as exc:
        netdsl.fit(spec_file(), device="cuda:1", out=tmp_path, progress=False)
    assert exc.value.diagnostics[0].code == "E404"
    with pytest.raises(netdsl.NetdslError, match="fp16 needs a CUDA device"):
        netdsl.fit(spec_file(), precision="fp16", out=tmp_path, progress=False)


# ---- eval ------------------------------------------------------------------------------------
def test_eval_reproduces_the_runs_test_metrics(spec_file, tmp_path, capsys):
    path = spec_file()
    r = netdsl.fit(path, out=tmp_path, progress=False)
    files = r["files"]
    again = netdsl.evaluate(path, files["weights"])
    assert again["metrics"] == r["test"] and again["split"] == "test" and again["samples"] == 64
    from_ckpt = netdsl.evaluate(path, files["checkpoint"])  # a checkpoint works too
    assert from_ckpt["metrics"] == r["test"]
    main(["eval", str(path), "--weights", files["weights"], "--json"])
    assert json.loads(capsys.readouterr().out)["metrics"] == r["test"]
    main(["eval", str(path), "-w", files["weights"]])
    out = capsys.readouterr()
    line = out.out
    assert line.startswith("Net on test (64 samples, cpu): test.loss ") and "test.accuracy" in line
    assert "train" not in out.err  # evaluating, not training


# ---- the loop --------------------------------------------------------------------------------
def _fit(text: str, **overrides):
    spec = netdsl.loads(text, "t.net")
    settings = spec.plan(**overrides).settings()
    data = load_data(**settings["data"])
    return loop.fit(spec.build, data, settings, progress=Quiet()), settings, data, spec


def test_the_loop_trains_exactly_like_a_plain_pytorch_loop():
    """Differential: the same seed, batches and optimizer in a hand-written loop give the
    same weights, bit for bit."""
    text = NET.replace(" -> Dropout(0.2)", "").replace(
        "  scheduler = StepLR(step_size=1, gamma=0.5)\n", "")
    result, s, data, spec = _fit(text)
    torch.manual_seed(s["seed"])
    model = spec.build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = data.loader("train", 16, seed=s["seed"])
    for epoch in range(3):
        for batch in loader.batches(epoch):
            x, y = batch["x"], batch["y"]
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    assert _same(_weights(result["model"]), _weights(model))
    model.eval()
    with torch.no_grad():
        acc = (model(data.test["x"]).argmax(1) == data.test["y"]).float().mean().item()
    assert result["test"]["test.accuracy"] == pytest.approx(acc, abs=1e-12)


def test_accumulating_two_half_batches_equals_one_batch():
    text = NET.replace(" -> Dropout(0.2)", "")
    whole, *_ = _fit(text, optimizer="SGD(lr=0.1)", batch_size=16)
    halves, *_ = _fit(text, optimizer="SGD(lr=0.1)", batch_size=8, accumulate=2)
    assert whole["steps"] == halves["steps"] == 3 * 14
    for k, v in _weights(whole["model"]).items():
        torch.testing.assert_close(_weights(halves["model"])[k], v, rtol=1e-5, atol=1e-6)


def test_warmup_ramps_the_lr_on_top_of_the_schedule(monkeypatch):
    seen = []
    step = torch.optim.SGD.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    result, *_ = _fit(NET, warmup=4, epochs=2)
    assert seen[:5] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    assert seen[14:16] == pytest.approx([0.05, 0.05])  # epoch 2: StepLR halved it
    assert [h["lr"] for h in result["history"]] == pytest.approx([0.1, 0.05])


def test_early_stopping_and_restore_best(spec_file, tmp_path):
    text = NET.replace("  seed = 3", """  seed = 3
  early_stopping = EarlyStopping(patience=1, min_delta=10, restore_best=true)
  checkpoint = Checkpoint(keep="all")""").replace("epochs = 3", "epochs = 20")
    r = runner.run(netdsl.load(spec_file(text)), out=tmp_path, progress=False)
    assert r["status"] == "early_stopped" and r["epochs"] == 3  # 2 epochs without a gain of 10
    assert r["message"].startswith("early stopping: val.loss has not improved for 2 epochs")
    assert "at epoch 1" in r["message"]
    ck = os.path.join(r["run_dir"], "checkpoints")
    first = loop.load_checkpoint(os.path.join(ck, "epoch_001.pt"))["model"]
    last = loop.load_checkpoint(os.path.join(ck, "epoch_003.pt"))["model"]
    assert _same(_weights(r.model), first) and not _same(first, last)


def test_several_outputs_report_per_output_metrics():
    text = """\
model Two {
  input x: [8]
  h = x -> Linear(16) -> ReLU
  a = h -> Linear(3)
  b = h -> Linear(3)
  output a, b
}
train Two {
  data = synthetic(shape=8, num_classes=3, n=128, n_test=32)
  loss = 0.5 * CrossEntropyLoss(a, label) + CrossEntropyLoss(b, label, label_smoothing=0.1) / 4
  metrics = [accuracy, top5]
  epochs = 2
}
"""
    r, *_ = _fit(text)
    f = r["final"]
    assert {"train.loss", "train.a.loss", "train.a.accuracy", "train.a.top5", "train.b.loss",
            "train.b.accuracy", "train.b.top5"} <= set(f)
    assert f["train.loss"] == pytest.approx(0.5 * f["train.a.loss"] + 0.25 * f["train.b.loss"])
    assert f["train.a.top5"] == 1.0  # three classes: always in the top 5


def test_binary_loss_on_two_class_labels():
    text = """\
model Bin {
  input x: [8]
  x -> Linear(1) -> score
  output score
}
train Bin {
  data = synthetic(shape=8, num_classes=2, n=128, n_test=64)
  loss = BCEWithLogitsLoss(score, label)
  optimizer = SGD(lr=0.5)
  epochs = 5
}
"""
    spec = netdsl.loads(text, "bin.net")
    assert any("0/1 labels are used as float targets" in n.message for n in spec.plan().notes)
    r, *_ = _fit(text)
    assert r["test"]["test.accuracy"] > 0.8


def test_bf16_autocast_on_the_cpu():
    r, *_ = _fit(NET, precision="bf16", epochs=1)
    assert r["status"] == "completed" and r["final"]["train.loss"] < 2


# ---- the whole vocabulary runs ---------------------------------------------------------------
SCHED_ARGS = {"StepLR": "step_size=1", "MultiStepLR": "milestones=[1]",
              "ExponentialLR": "gamma=0.9", "CosineAnnealingWarmRestarts": "T_0=1",
              "ReduceLROnPlateau": "patience=0"}


@pytest.mark.parametrize("name", list(SCHEDULERS.members))
def test_every_scheduler_runs(name):
    r, s, *_ = _fit(NET, scheduler=f"{name}({SCHED_ARGS.get(name, '')})", epochs=2)
    assert r["status"] == "completed"
    lrs = [h["lr"] for h in r["history"]]
    assert all(0 <= lr <= 0.1 + 1e-12 for lr in lrs), lrs
    if name in ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR"):
        assert lrs[-1] < 0.1


@pytest.mark.parametrize("name", list(OPTIMIZERS.members))
def test_every_optimizer_runs(name):
    r, *_ = _fit(NET, optimizer=f"{name}(lr=0.01)", epochs=1)
    assert r["status"] == "completed" and torch.isfinite(torch.tensor(r["final"]["train.loss"]))


LOSS_SPECS = {
    "class": ("Linear(3)", "num_classes=3", "accuracy"),
    "same": ("Linear(2)", "target_shape=2", "mae"),
    "binary": ("Linear(1)", "num_classes=2", "accuracy"),
}


@pytest.mark.parametrize("name", list(LOSSES.members))
def test_every_loss_runs(name):
    cls = LOSSES.members[name]
    head, data, metric = LOSS_SPECS[cls.target]
    if not cls.default_metrics:  # KLDivLoss: no MAE of log-probabilities unless asked
        metric = "loss"
    if name == "BCELoss":
        head += " -> Sigmoid"
    extra = ""
    if name in ("NLLLoss", "KLDivLoss"):
        head += " -> LogSoftmax(dim=1)"
    if name == "KLDivLoss":  # synthetic targets are no distributions; read them as log-probs
        extra = ", log_target=true, reduction=\"batchmean\""
    text = (f"model M {{\n  input x: [8]\n  x -> Linear(16) -> ReLU -> {head} -> out\n"
            f"  output out\n}}\n"
            f"train M {{\n  data = synthetic(shape=8, {data}, n=64, n_test=16)\n"
            f"  loss = {name}(out, target{extra})\n  epochs = 1\n}}\n")
    r, *_ = _fit(text)
    assert r["status"] == "completed" and f"test.{metric}" in r["test"]


def test_the_inline_example_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "inline_regression.py"
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    preds = out.stdout.rsplit("[", 1)[1].rstrip().rstrip("]").split(", ")
    assert [round(float(p)) for p in preds] == [2, 4, 6, 8]
    assert "holds one value per sample" in out.stdout
