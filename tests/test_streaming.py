"""The streaming path: an image folder read batch by batch through torch's DataLoader gives
the same batches as the in-memory path (augmentation included), so histories are identical;
the choice is automatic from the size and can be forced; a run killed (-9) mid-epoch resumes to
bit-identical weights; a bad file read by a worker is a clean error. Real MNIST digits written
as PNG files (skipped without ../shared/data)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mnist_data import DATA, needs_mnist

import netdsl
from netdsl.runtime import loop, runner
from netdsl.runtime.data import DamagedFileError, DataError, load_data

ROOT = Path(__file__).resolve().parents[1]
pytestmark = needs_mnist

SPEC = """\
model LeNet {{
  input image: [1, 28, 28]
  image -> Conv2d(6, 5) -> ReLU -> MaxPool2d(2) -> Conv2d(16, 5) -> ReLU -> MaxPool2d(2)
        -> Flatten -> Linear(120) -> ReLU -> Dropout(0.2) -> Linear(84) -> ReLU -> Linear(10)
        -> logits
  output logits
}}
train LeNet {{
  data = ImageFolder(path="{path}", convert="L", val=0.1, {extra}
                     transform=[{transform}, ToTensor, Normalize(0.1307, 0.3081)])
  batch_size = 32
  epochs = {epochs}
  optimizer = Adam(lr=1e-3)
  seed = 0
  device = "cpu"
  {more}
}}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """600 training and 200 test digits of the real MNIST split, as PNG files."""
    from PIL import Image

    root = tmp_path_factory.mktemp("mnist_png")
    d = load_data("MNIST", root=DATA, limit=600, transforms=[["ToTensor", {}]])
    for split, s, n in (("train", d.train, 600), ("test", d.test, 200)):
        for i in range(n):
            f = root / split / str(int(s["label"][i])) / f"{i:04d}.png"
            f.parent.mkdir(parents=True, exist_ok=True)
            pixels = (s["image"][i, 0] * 255).round().to(torch.uint8).numpy()
            Image.fromarray(pixels).save(f)
    return root


# random steps run per batch on the device, or per sample by torchvision.transforms.v2
BATCHED = "RandomCrop(28, padding=2)"
PER_SAMPLE = "RandomResizedCrop(28, scale=(0.7, 1.0)), ColorJitter(0.4, 0.4)"


def spec(tmp_path, folder, extra="", epochs=2, more="", name="s.net", transform=BATCHED) -> Path:
    path = tmp_path / name
    path.write_text(SPEC.format(path=folder.as_posix(), extra=extra, epochs=epochs, more=more,
                                transform=transform))
    return path


def run(path, out, **kw):
    return runner.run(netdsl.load(path), out=out, progress=False, **kw)


def strip(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("transform", [BATCHED, PER_SAMPLE], ids=["batched", "per-sample"])
def test_streamed_and_in_memory_runs_give_identical_histories(tmp_path, folder, transform):
    # (with Dropout: the DataLoader must not draw from the RNG the model's dropout uses)
    memory = run(spec(tmp_path, folder, "stream=false,", transform=transform), tmp_path / "a")
    for workers in (0, 1):
        streamed = run(spec(tmp_path, folder, f"stream=true, workers={workers},",
                            name=f"w{workers}.net", transform=transform), tmp_path / f"w{workers}")
        assert strip(streamed["history"]) == strip(memory["history"])
        assert streamed["test"] == memory["test"]
        for k, v in weights(memory.model).items():
            assert torch.equal(v, streamed.model.state_dict()[k]), k
    assert memory["history"][-1]["train.loss"] < memory["history"][0]["train.loss"]


def test_the_choice_is_automatic_from_the_size_and_reported(tmp_path, folder, monkeypatch):
    d = load_data("ImageFolder", path=str(folder), convert="L", transforms=["ToTensor"])
    assert not d.info.streamed and isinstance(d.train["image"], torch.Tensor)
    assert "loaded into memory (600 images, 1.8 MB as tensors; within" in d.info.loading_note()
    monkeypatch.setenv("NETDSL_IN_MEMORY_LIMIT", "1M")
    d = load_data("ImageFolder", path=str(folder), convert="L", transforms=["ToTensor"],
                  workers=0)
    assert d.info.streamed and d.info.loading_note() == (
        "data: streamed from disk (600 images, 1.8 MB as tensors; more than the in-memory "
        "limit of 1.0 MB; read by the training process)")
    batch = next(iter(d.loader("train", 8)))
    assert batch["image"].shape == (8, 1, 28, 28) and batch["label"].shape == (8,)
    r = run(spec(tmp_path, folder, epochs=1), tmp_path / "r")
    assert any("data: streamed from disk" in n for n in r["notes"])


@pytest.mark.parametrize("transform", [BATCHED, PER_SAMPLE], ids=["batched", "per-sample"])
def test_a_run_killed_mid_epoch_resumes_to_bit_identical_weights(tmp_path, folder, transform):
    more = "checkpoint = Checkpoint(every_steps=4)"
    path = spec(tmp_path, folder, "stream=true, workers=1,", epochs=3, more=more,
                transform=transform)
    whole = run(path, tmp_path / "whole")
    out = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "-m", "netdsl", "run", str(path), "--out", str(out)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state, deadline = None, time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            found = list(out.glob("*/checkpoints/last.pt"))
            if found:
                try:
                    state = loop.load_checkpoint(str(found[0]))
                except Exception:  # noqa: BLE001 -- being replaced this very moment
                    state = None
                if state is not None and state["step"] > 0 and state["epoch"] >= 1:
                    os.kill(p.pid, signal.SIGKILL)  # mid-epoch, after a step checkpoint
                    break
            time.sleep(0.01)
    finally:
        p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-epoch"
    folder_ = next(out.iterdir())
    resumed = runner.run(netdsl.load(path), resume=folder_, progress=False)
    for k, v in weights(whole.model).items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert strip(resumed["history"]) == strip(whole["history"])


def test_a_bad_file_read_by_a_worker_is_a_clean_error(tmp_path, folder):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder / "train", bad)
    victim = sorted((bad / "3").iterdir())[5]
    victim.write_bytes(b"not a png")
    d = load_data("ImageFolder", path=str(bad), convert="L", transforms=["ToTensor"],
                  stream=True, workers=1)
    with pytest.raises(DamagedFileError) as e:
        for _ in d.loader("train", 64):
            pass
    assert str(victim) in str(e.value) and e.value.hint == "delete or replace the file"
    victim.unlink()
    from PIL import Image

    Image.new("L", (30, 28)).save(victim.with_suffix(".png"))
    d = load_data("ImageFolder", path=str(bad), convert="L", transforms=["ToTensor"],
                  stream=True, workers=0)
    with pytest.raises(DataError, match=r"is 1×28×30 after the transforms, but the first is "
                                        r"1×28×28"):
        for _ in d.loader("train", 64):
            pass
