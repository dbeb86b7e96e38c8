"""Several processes: `netdsl run --nproc 2` (torchrun, gloo on the CPU) trains what one process
trains, on real MNIST and from streamed files; every test sample is scored once; only rank 0
writes; a failing, killed or interrupted job ends cleanly and quickly; checkpoints resume on 2
processes and on 1. (Skipped without ../shared/data.)

Tolerance: the ranks' gradients are summed in another order than one process sums a batch's
(DDP all-reduces two half-batch gradients), which moves float32 results by a few ulps per step;
Adam divides by the root of the squared gradients, so where a gradient is near zero those ulps
become a visible part of a step. Per-epoch losses agree to rtol 1e-4 (measured: 5e-6 after 34
steps of LeNet) and weights to atol 5e-4, half an Adam step at lr 1e-3 (measured: 5.8e-5);
accuracies may differ by a sample or two whose scores were a tie."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mnist_data import DATA, needs_mnist

from netdsl.runtime import loop

ROOT = Path(__file__).resolve().parents[1]
pytestmark = needs_mnist

LENET = """\
model LeNet {{
  input image: [1, 28, 28]
  image -> Conv2d(6, 5) -> ReLU -> MaxPool2d(2) -> Conv2d(16, 5) -> ReLU -> MaxPool2d(2)
        -> Flatten -> Linear(120) -> ReLU -> Linear(84) -> ReLU -> Linear(10) -> logits
  output logits
}}
train LeNet {{
  data = {data}
  batch_size = 64
  eval_batch_size = 100
  epochs = {epochs}
  optimizer = Adam(lr=1e-3)
  metrics = [accuracy]
  seed = 0
  device = "cpu"
  {more}
}}
"""
MNIST = (f'MNIST(root="{DATA.as_posix()}", limit=1203, val=0.1, '
         'transform=[ToTensor, Normalize(0.1307, 0.3081)])')  # test: 1,203 samples, odd


def netdsl(*args, timeout=300, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "netdsl", *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, env=env, cwd=ROOT)
    if check:
        assert r.returncode == 0, r.stderr[-4000:]
    return r


def run(path, out, *extra, nproc=1):
    more = ["--nproc", nproc] if nproc > 1 else []
    r = netdsl("run", path, "--out", out, "--json", *more, *extra)
    return json.loads(r.stdout)


def write(tmp_path, name, **kw) -> Path:
    path = tmp_path / name
    path.write_text(LENET.format(**{"data": MNIST, "epochs": 2, "more": "", **kw}))
    return path


def weights(result):
    return loop.load_tensors(Path(result["run_dir"]) / "weights.pt")


def same_training(one, two):
    for a, b in zip(one["history"], two["history"], strict=True):
        for k, v in a.items():
            if k == "seconds":
                continue
            if k.endswith("accuracy"):
                assert abs(b[k] - v) < 2e-3, (k, v, b[k])  # a few borderline samples at most
            else:
                assert b[k] == pytest.approx(v, rel=1e-4, abs=1e-6), (k, v, b[k])
    wa, wb = weights(one), weights(two)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=5e-4, rtol=0)


def test_two_processes_train_what_one_trains_and_score_every_sample_once(tmp_path):
    path = write(tmp_path, "lenet.net")
    one = run(path, tmp_path / "one")
    two = run(path, tmp_path / "two", nproc=2)
    same_training(one, two)
    assert one["test"]["test.accuracy"] == pytest.approx(two["test"]["test.accuracy"], abs=2e-3)
    assert two["data"]["test"] == 1203  # odd: one process scores a sample more
    assert any("distributed: 2 processes (gloo); each batch of 64 is split 32 per process"
               in n for n in two["notes"])
    # only rank 0 wrote: one run folder, its files once
    folders = list((tmp_path / "two").iterdir())
    assert len(folders) == 1
    lines = (folders[0] / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    # the same weights scored by 1 and by 2 processes (a finished run resumed: no training)
    import shutil

    shutil.copytree(folders[0], tmp_path / "copy")
    by_one = run(path, tmp_path / "u1", "--resume", folders[0])
    by_two = run(path, tmp_path / "u2", "--resume", tmp_path / "copy", nproc=2)
    assert by_one["test"]["test.accuracy"] == by_two["test"]["test.accuracy"]  # the same count
    assert by_one["test"]["test.loss"] == pytest.approx(by_two["test"]["test.loss"], rel=1e-6)


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> Path:
    """500 real MNIST digits as PNG files, one folder per class."""
    from PIL import Image

    from netdsl.runtime.data import load_data

    folder = tmp_path_factory.mktemp("png")
    d = load_data("MNIST", root=DATA, limit=500, transforms=["ToTensor"])
    for i in range(500):
        f = folder / str(int(d.train["label"][i])) / f"{i:03d}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.train["image"][i, 0] * 255).round().byte().numpy()).save(f)
    return folder


def streamed(folder: Path) -> str:
    return (f'ImageFolder(path="{folder.as_posix()}", convert="L", stream=true, workers=1, '
            'val=0.2, transform=[RandomResizedCrop(28, scale=(0.8, 1.0)), ToTensor])')


def test_the_seed_mlp_and_a_streamed_folder_too(tmp_path, pngs):
    mlp = ROOT / "specs" / "mlp.net"
    extra = ["--epochs", "1", "--data-root", DATA, "--set", "data.limit=2000"]
    one = run(mlp, tmp_path / "one", *extra)
    two = run(mlp, tmp_path / "two", *extra, nproc=2)
    same_training(one, two)
    path = write(tmp_path, "stream.net", data=streamed(pngs))
    one = run(path, tmp_path / "s1")
    two = run(path, tmp_path / "s2", nproc=2)
    same_training(one, two)


def test_a_machine_without_gpus_refuses_nccl_before_starting(tmp_path):
    path = write(tmp_path, "nccl.net", more='distributed = Distributed(backend="nccl")')
    r = netdsl("run", path, "--nproc", 2, "--out", tmp_path / "o", check=False)
    assert r.returncode == 1 and "error[E404]: the nccl backend runs on CUDA GPUs" in r.stderr
    assert not (tmp_path / "o").exists()
    if not torch.cuda.is_available():
        r = netdsl("run", write(tmp_path, "gpu.net"), "--nproc", 2, "--device", "cuda",
                   check=False)
        assert r.returncode == 1 and "--nproc 2 starts one process per GPU" in r.stderr


def test_torchrun_itself_across_two_nodes(tmp_path):
    """Two torchrun launchers of one process each, as two machines would start them, meeting
    at one rendezvous: netdsl takes torchrun's options as they are."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = write(tmp_path, "nodes.net", epochs=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(i),
         "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "job",
         "--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "netdsl", "run", str(path), "--json",
         "--out", str(tmp_path / "out")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [n.communicate(timeout=300) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    printed = [json.loads(o) for o, _ in outs if o.strip()]  # the node of rank 0 reports
    assert len(printed) == 1
    one = run(path, tmp_path / "one")
    same_training(one, printed[0])


def _children(pid: int) -> dict[int, int]:
    """{rank: pid} of the worker processes under a launcher."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text().split()
        except OSError:
            continue
        if int(stat[3]) != pid:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                out[int(item[5:])] = int(proc.name)
    return out


def _start(path, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "netdsl", "run", str(path), "--out", str(out),
                             "--nproc", "2", *map(str, extra)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_step(out: Path, launcher, step: int = 1) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and launcher.poll() is None:
        found = list(out.glob("*/checkpoints/last.pt"))
        if found:
            try:
                state = loop.load_checkpoint(str(found[0]))
            except Exception:  # noqa: BLE001 -- being replaced this very moment
                state = None
            if state is not None and state["step"] >= step:
                return
        time.sleep(0.05)
    raise AssertionError("no step checkpoint appeared")


def test_a_killed_process_ends_the_job_quickly_and_says_which(tmp_path):
    path = write(tmp_path, "k.net", epochs=20, more="checkpoint = Checkpoint(every_steps=2)")
    launcher = _start(path, tmp_path / "out")
    _wait_for_step(tmp_path / "out", launcher)
    ranks = _children(launcher.pid)
    os.kill(ranks[1], signal.SIGKILL)
    t0 = time.monotonic()
    _, err = launcher.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert launcher.returncode == 1
    assert "netdsl: process 1 of 2 was killed by signal 9; the job stopped" in err
    assert "Traceback" not in err


def test_one_failing_process_ends_the_job_with_its_own_error(tmp_path, pngs):
    """A damaged image that only process 1 reads, in its part of the first batch."""
    import shutil

    from netdsl.runtime.data import load_data

    folder = tmp_path / "png"
    shutil.copytree(pngs, folder)
    d = load_data("ImageFolder", path=str(folder), convert="L", stream=True, val=0.2,
                  transforms=["ToTensor"])
    loader = d.loader("train", 64, rank=1, world=2)
    lo, hi, _ = loader._bounds(0)
    images = d.train["image"]
    victim = images.reader.files["image"][int(images.index[int(loader.order(0)[lo + 3])])]
    Path(victim).write_bytes(b"not a png")
    spec = write(tmp_path, "bad.net", data=streamed(folder))
    r = netdsl("run", spec, "--nproc", 2, "--out", tmp_path / "o", check=False)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "error[E414]" in r.stderr and victim in r.stderr and "Traceback" not in r.stderr
    assert "netdsl: process 1 of 2 exited with status 1; the job stopped" in r.stderr


@pytest.fixture(scope="module")
def never_stopped(tmp_path_factory):
    """(spec, result) of a 2-process run with step checkpoints that nothing stops."""
    tmp = tmp_path_factory.mktemp("whole")
    path = write(tmp, "c.net", epochs=3, more="checkpoint = Checkpoint(every_steps=2)")
    return path, run(path, tmp / "whole", nproc=2)


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_a_stopped_job_resumes_on_two_processes_and_on_one(tmp_path, how, never_stopped):
    path, whole = never_stopped
    launcher = _start(path, tmp_path / "out")
    _wait_for_step(tmp_path / "out", launcher, step=4)
    # what a terminal's Ctrl-C does, or every process of the job killed at once
    os.killpg(launcher.pid, signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    t0 = time.monotonic()
    _, err = launcher.communicate(timeout=60)
    assert time.monotonic() - t0 < 30, err
    folder = next((tmp_path / "out").iterdir())
    if how == "ctrl-c":
        assert launcher.returncode == 130, err
        assert "--nproc 2" in err and "Traceback" not in err
        assert (folder / "checkpoints" / "interrupted.pt").is_file()
    import shutil

    again = tmp_path / "again"
    shutil.copytree(folder, again)
    resumed = run(path, tmp_path / "unused", "--resume", folder, nproc=2)
    ta, tb = weights(whole), weights(resumed)
    for k in ta:  # the same processes: exactly the run that was never stopped
        assert torch.equal(ta[k], tb[k]), k
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in whole["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed["history"]] == strip
    one = run(path, tmp_path / "unused1", "--resume", again)
    assert any("resuming on 1 process a run that 2 processes wrote" in n for n in one["notes"])
    same_training(whole, one)


def test_a_compiled_script_trains_under_torchrun_like_netdsl_run(tmp_path):
    from netdsl.targets.compile import compile_spec

    # (a plan that says `distributed` compiles with the runtime, which trains under torchrun;
    # a script written out for one process refuses torchrun: test_compile_train.py)
    path = write(tmp_path, "lenet.net", epochs=1, more="distributed = Distributed()")
    ours = run(path, tmp_path / "ours", nproc=2)
    script = tmp_path / "lenet.py"
    script.write_text(compile_spec(path), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--standalone", str(script), "--json", "--out", str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout)  # rank 0 alone prints
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in ours["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in got["history"]] == strip
    assert got["test"] == ours["test"]


def test_fsdp_shards_the_model_and_its_checkpoints_resume_anywhere(tmp_path):
    """FSDP2 (fully_shard) on gloo: the same training as one process; its checkpoints hold the
    whole model (gathered through torch.distributed.checkpoint's state-dict API), so `netdsl
    eval` reads them and a run resumes on 2 processes exactly and on 1 correctly."""
    path = write(tmp_path, "f.net", more='distributed = Distributed(strategy="fsdp")')
    one = run(path, tmp_path / "one")
    whole = run(path, tmp_path / "two", nproc=2)
    same_training(one, whole)
    half = run(path, tmp_path / "half", "--epochs", 1, nproc=2)
    import shutil

    folder = Path(half["run_dir"])
    shutil.copytree(folder, tmp_path / "copy")
    again = run(path, tmp_path / "u", "--resume", folder, "--epochs", 2, nproc=2)
    wa, wb = weights(whole), weights(again)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    alone = run(path, tmp_path / "u1", "--resume", tmp_path / "copy", "--epochs", 2)
    same_training(whole, alone)
    r = netdsl("eval", path, "-w", Path(whole["run_dir"]) / "checkpoints" / "best.pt", "--json")
    assert json.loads(r.stdout)["metrics"]["test.loss"] == pytest.approx(
        whole["test"]["test.loss"], rel=1e-6)


def test_a_loss_that_becomes_nan_stops_every_process_at_once(tmp_path):
    """The metrics are summed over the processes, so every one sees the NaN at the same step:
    all stop, rank 0 reports E408, and nothing waits for a collective that never comes."""
    path = write(tmp_path, "nan.net")
    text = path.read_text().replace("optimizer = Adam(lr=1e-3)", "optimizer = SGD(lr=1e12)")
    path.write_text(text)
    t0 = time.monotonic()
    r = netdsl("run", path, "--nproc", 2, "--out", tmp_path / "o", check=False)
    assert time.monotonic() - t0 < 120
    assert r.returncode == 1 and "error[E408]: training diverged" in r.stderr, r.stderr[-2000:]
    assert r.stderr.count("error[E408]") == 1 and "Traceback" not in r.stderr
