"""Step and time checkpoints: kill -9 at any moment, resume, and the weights are bit-identical.

A run with `Checkpoint(every_steps=2)` is forked, killed with SIGKILL at random moments (many
land inside a checkpoint write), and resumed from its folder each time, until it finishes; its
final weights, history and test metrics must equal an uninterrupted run's exactly. A full disk
while writing a checkpoint is E410 and never touches the last good file.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.cli import main
from netdsl.runtime import loop, runner

NET = """\
model Net {
  input x: [8]
  x -> Linear(32) -> ReLU -> Dropout(0.2) -> Linear(3) -> logits
  output logits
}
train Net {
  data = synthetic(shape=8, num_classes=3, n=1024, n_test=64, val=32)
  batch_size = 16
  epochs = 3
  optimizer = Adam(lr=0.01)
  scheduler = StepLR(step_size=1, gamma=0.5)
  checkpoint = Checkpoint(every_steps=2, keep="last")
  seed = 7
}
"""


def _child(spec_path: Path, out: Path, resume: Path | None, result: Path) -> int:
    """Fork a process that runs the spec (resuming from `resume`); its pid."""
    pid = os.fork()
    if pid == 0:  # the child: train, write the weights, leave without running pytest's teardown
        code = 1
        try:
            torch.set_num_threads(1)
            r = runner.run(netdsl.load(spec_path), out=out, resume=resume, progress=False)
            torch.save({"weights": r.model.state_dict(), "history": r["history"],
                        "test": r["test"]}, result)
            code = 0
        finally:
            os._exit(code)
    return pid


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _bits(state: dict) -> dict:
    return {k: v.numpy().tobytes() for k, v in state.items()}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_9_at_random_moments_then_resume_is_bit_identical(tmp_path):
    spec = tmp_path / "net.net"
    spec.write_text(NET)
    # the reference run, in this process: it also imports everything the children need
    r = runner.run(netdsl.load(spec), out=tmp_path / "ref", progress=False)
    ref = _bits(r.model.state_dict())
    t0 = time.monotonic()
    pid = _child(spec, tmp_path / "whole", None, tmp_path / "whole.pt")
    setup = None
    while setup is None:  # until the first step checkpoint appears
        if list((tmp_path / "whole").glob("*/checkpoints/last.pt")):
            setup = time.monotonic() - t0
        time.sleep(0.002)
    assert _wait(pid) == 0
    full = time.monotonic() - t0
    whole = torch.load(tmp_path / "whole.pt", weights_only=True)
    assert _bits(whole["weights"]) == ref

    rng = random.Random(0)
    out, kills, stale_seen, folder = tmp_path / "killed", 0, 0, None
    while True:
        resume = folder if folder is not None and (folder / "checkpoints" / "last.pt").exists() \
            else None
        pid = _child(spec, out, resume, tmp_path / "killed.pt")
        if kills < 30:  # from the start of training (after the set-up) to well past a step
            time.sleep(setup + rng.uniform(0.0, 1.0) * (full - setup) / 20)
            os.kill(pid, signal.SIGKILL)
        code = _wait(pid)
        if code == 0:
            break
        assert code == -signal.SIGKILL, code
        kills += 1
        if folder is None and out.exists() and list(out.iterdir()):
            folder = next(out.iterdir())
        if folder is not None and not (folder / "checkpoints" / "last.pt").exists():
            shutil.rmtree(folder)  # killed before its first checkpoint: start again
            folder = None
        if folder is not None:
            stale_seen += any(p.name.endswith(".tmp") for p in (folder / "checkpoints").iterdir())
    assert kills >= 20
    killed = torch.load(tmp_path / "killed.pt", weights_only=True)
    assert _bits(killed["weights"]) == _bits(whole["weights"])
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in whole["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in killed["history"]] == strip
    assert killed["test"] == whole["test"]
    # the killed writes' temporaries are gone once a run resumes in the folder
    assert not [p for p in (folder / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    print(f"{kills} kills, {stale_seen} inside a checkpoint write; run {full:.2f} s, set-up {setup:.2f} s")


def test_step_checkpoints_are_written_within_the_first_epoch(tmp_path, monkeypatch):
    spec = netdsl.loads(NET.replace("epochs = 3", "epochs = 1"), "net.net")
    saved = []
    real = loop.save_checkpoint
    monkeypatch.setattr(loop, "save_checkpoint",
                        lambda path, state: (saved.append((os.path.basename(path), state.get("step"))),
                                             real(path, state))[1])
    runner.run(spec, out=tmp_path, progress=False)
    mid = [step for name, step in saved if name == "last.pt" and step]
    assert mid == list(range(2, 62, 2))  # 992 training samples: 62 steps; then the epoch end


def test_minutes_checkpoints_follow_the_clock(tmp_path, monkeypatch):
    spec = netdsl.loads(NET.replace("every_steps=2", "every_minutes=0.5").replace("epochs = 3", "epochs = 1"),
                        "net.net")
    clock = iter(range(0, 10_000, 7))  # each look at the clock: 7 s later
    monkeypatch.setattr(loop.time, "monotonic", lambda: next(clock))
    saved = []
    real = loop.save_checkpoint
    monkeypatch.setattr(loop, "save_checkpoint",
                        lambda path, state: (saved.append(state.get("step")), real(path, state))[1])
    runner.run(spec, out=tmp_path, progress=False)
    steps = [s for s in saved if s]
    assert steps and all(b - a >= 4 for a, b in itertools.pairwise(steps))  # >= 30 s of 7 s looks


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    dead = 2**22 + 12345  # above the default pid_max: no such process
    (folder / f".last.pt.{dead}.tmp").write_bytes(b"half a checkpoint")
    (folder / f".last.pt.{os.getppid()}.tmp").write_bytes(b"a live writer's")
    (folder / "last.pt").write_bytes(b"kept")
    removed = loop.remove_stale_temporaries(str(folder))
    assert removed == [f".last.pt.{dead}.tmp"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f".last.pt.{os.getppid()}.tmp", "last.pt"])


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:671] "
                                                  ". unexpected pos 64 vs 0")])
def test_a_full_disk_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, failure):
    path = tmp_path / "last.pt"
    loop.save_checkpoint(str(path), {"good": torch.ones(3)})
    before = path.read_bytes()

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise failure

    monkeypatch.setattr(loop.torch, "save", full)
    with pytest.raises(loop.DiskFull) as exc:
        loop.save_checkpoint(str(path), {"good": torch.zeros(3)})
    assert "no space left" in str(exc.value) and "intact" in str(exc.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left


def _tmpfs(size: str):
    """A small tmpfs, when this process may mount one (root in a container); else None."""
    import subprocess
    import tempfile

    where = Path(tempfile.mkdtemp())
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                        check=False, capture_output=True).returncode == 0
    return where if ok else None


@pytest.mark.parametrize("size,width", [("16k", 32), ("2m", 7500)])
def test_run_on_a_full_disk_is_E410_then_resumes_exactly(tmp_path, size, width, capsys):
    """16 KB: full before the first checkpoint. 2 MB: one checkpoint of 1.1 MB fits, the next
    (written beside it before it replaces it) does not."""
    import subprocess

    disk = _tmpfs(size)
    if disk is None:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        spec = tmp_path / "net.net"
        spec.write_text(NET.replace("every_steps=2", "every_steps=8")
                        .replace("Linear(32)", f"Linear({width})"))
        whole = runner.run(netdsl.load(spec), out=tmp_path / "whole", progress=False)
        with pytest.raises(SystemExit) as e:
            main(["run", str(spec), "--out", str(disk), "--json"])
        assert e.value.code == 1
        err = capsys.readouterr().err
        assert "E900" not in err and "Traceback" not in err
        line = [x for x in err.splitlines() if "error[E410]" in x]
        assert len(line) == 1 and "no space left on the device to write" in line[0], err
        folders = list(disk.iterdir())
        if size == "16k":  # nothing to resume from: the failed run leaves no folder behind
            assert folders == [] and "is intact" not in line[0]
            return
        folder = folders[0]
        last = folder / "checkpoints" / "last.pt"
        assert last.exists() and "is intact" in line[0]
        assert json.loads((folder / "result.json").read_text())["status"] == "failed"
        if last.exists():  # the last good checkpoint loads, and resuming from it is exact
            target = tmp_path / "moved"
            shutil.copytree(folder, target)  # "free space": the same run, on a roomier disk
            resumed = runner.run(netdsl.load(spec), resume=target, progress=False)
            assert _bits(resumed.model.state_dict()) == _bits(whole.model.state_dict())
    finally:
        subprocess.run(["umount", str(disk)], check=False, capture_output=True)


@pytest.mark.parametrize("how", ["resume", "weights"])
def test_a_malicious_checkpoint_is_refused_in_one_line(tmp_path, how):
    """The pickle would run a command; torch refuses it (weights_only) and netdsl says so in
    its own E409 line, with none of torch's warning text."""
    import pickle
    import subprocess
    import sys

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil(), protocol=4))
    spec = tmp_path / "net.net"
    spec.write_text(NET)
    args = ["run", str(spec), "--resume", str(evil), "--out", str(tmp_path / "runs")] \
        if how == "resume" else ["eval", str(spec), "--weights", str(evil)]
    p = subprocess.run([sys.executable, "-m", "netdsl", *args], check=False, capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.splitlines()[0].startswith("error[E409]: ") and "evil.pt" in p.stderr
    assert "Unpickler" not in p.stderr and "torch.load" not in p.stderr and "Warning" not in p.stderr
    assert not (tmp_path / "pwned").exists()


def test_the_compiled_script_on_a_full_disk_says_so_in_one_line(tmp_path):
    import subprocess
    import sys

    from netdsl.targets.compile import compile_spec

    disk = _tmpfs("16k")
    if disk is None:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        script = tmp_path / "train_net.py"
        script.write_text(compile_spec(netdsl.loads(NET, "net.net")))
        p = subprocess.run([sys.executable, str(script), "--out", str(disk / "run")],
                           check=False, capture_output=True, text=True)
        assert p.returncode == 1
        assert p.stderr.strip().splitlines()[-1].startswith("error: no space left on the device")
        assert "Traceback" not in p.stderr
    finally:
        subprocess.run(["umount", str(disk)], check=False, capture_output=True)
