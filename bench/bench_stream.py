#!/usr/bin/env python
"""Streaming benchmark: LeNet trained from MNIST digits stored as PNG files, read batch by batch.

The 8,000 MNIST training digits are written once as PNG files in torchvision's ImageFolder
layout (ROOT/train/<label>/<copy>_<index>.png, ROOT/test/<label>/<index>.png), K copies of
the training set for a scale factor K (K=1: 8,000 files, K=10: 80,000; the test split stays
2,000). The same LeNet (batch 64, Adam(lr=1e-3), seed 0, RandomCrop(28, padding=2), ToTensor,
Normalize) is then trained from those files in four ways:

* ``tutorial`` -- the seed tutorials' way: ``torchvision.datasets.ImageFolder`` with PIL and
  ``Compose([Grayscale(1), RandomCrop, ToTensor, Normalize])``, ``DataLoader(shuffle=True)``
  with no workers, ``.to(device)`` per batch, ``loss.item()`` every step.
* ``best`` -- a careful hand-written DataLoader pipeline: ImageFolder whose loader is
  ``torchvision.io.decode_image`` (grayscale uint8 tensors, measured slightly faster than PIL
  for these files) with the same transforms on tensors, W workers, persistent workers,
  ``prefetch_factor=4``, pinned memory on CUDA, ``zero_grad(set_to_none=True)``, the loss
  summed on the device and one ``.item()`` per epoch.
* ``netdsl`` -- netdsl's own runner (``netdsl.runtime.runner.run``) on a spec whose data is
  ``ImageFolder(..., stream=true, workers=W)``.
* ``netdsl-memory`` -- the same spec with ``stream=false``: every image decoded into memory
  before the first epoch.

Per run: training samples/s, mean epoch time (training only: the test pass is not timed),
setup time (before epoch 1), peak RSS of the main process (``RUSAGE_SELF``) and of its
DataLoader workers (``RUSAGE_CHILDREN``, read once the workers have exited), test accuracy and
the last epoch's training loss. Each run is a fresh interpreter (``ru_maxrss`` is a
process-wide high-water mark). The point: as the data grows 10x, streaming keeps its peak
memory flat, and netdsl's throughput should match ``best``'s. See bench/README.md.

    python bench/bench_stream.py --scales 1,10 --repeat 3 --json runs/bench_stream.json
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench_train import _sync, resolve_device  # same folder: the yardstick's helpers

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data"
DEFAULT_CACHE = REPO / "bench" / ".cache"
BATCH = 64
TEST_BATCH = 1000
MEAN, STD = (0.1307,), (0.3081,)
MARKER = ".complete"  # written last: a folder without it is rewritten
SCALED_DEFAULT = ("best", "netdsl")  # what runs above K=1 unless --variants says otherwise

SPEC = """\
model LeNet {{
  input image: [1, 28, 28]
  image -> Conv2d(6, 5) -> ReLU -> MaxPool2d(2) -> Conv2d(16, 5) -> ReLU -> MaxPool2d(2)
        -> Flatten -> Linear(120) -> ReLU -> Linear(84) -> ReLU -> Linear(10) -> logits
  output logits
}}
train LeNet {{
  data = ImageFolder(path={root}, convert="L", stream={stream}, workers={workers},
                     transform=[{augment}, ToTensor, Normalize(0.1307, 0.3081)])
  batch_size = {batch}
  eval_batch_size = {test_batch}
  epochs = {epochs}
  optimizer = Adam(lr=1e-3)
  seed = {seed}
  device = {device}
}}
"""


def auto_workers() -> int:
    """One DataLoader worker per core but one, 1 to 4 (netdsl's own default too)."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


@dataclass
class Config:
    epochs: int = 1
    device: str = "cpu"
    data_root: str = str(DEFAULT_ROOT)
    cache: str = str(DEFAULT_CACHE)
    seed: int = 0
    batch_size: int = BATCH
    workers: int = field(default_factory=auto_workers)
    threads: int | None = None
    limit: int | None = None  # debug: training images per copy
    augment: str = "crop"  # a key of AUGMENT


@dataclass
class Result:
    """What one variant reports for one scale (peak memory is filled in by the harness)."""

    epoch_times: list[float]  # seconds per epoch, training only (data loading included)
    train_samples: int  # samples seen per epoch
    test_accuracy: float
    setup_s: float  # datasets, loaders (and for netdsl: spec, plan, model), before epoch 1
    final_loss: float  # mean training loss of the last epoch
    train_rss_mb: float  # main process peak RSS at the end of the last training epoch
    workers: int  # DataLoader worker processes (0: batches read in the main process)
    extra: dict = field(default_factory=dict)


# ---- the augmentation, written three ways ------------------------------------------------

# "crop": netdsl runs it per batch on the device; "v2": per sample, torchvision.transforms.v2
AUGMENT = {
    "crop": "RandomCrop(28, padding=2)",
    "v2": "RandomResizedCrop(28, scale=(0.8, 1.0)), ColorJitter(brightness=0.3, contrast=0.3)",
}


def _augment_steps(cfg: Config, v1: bool):
    """The random steps as torchvision objects: v1 (the tutorial's, on PIL images) or v2
    (on uint8 tensors)."""
    if v1:
        from torchvision import transforms as T
    else:
        from torchvision.transforms import v2 as T
    if cfg.augment == "crop":
        return [T.RandomCrop(28, padding=2)]
    return [T.RandomResizedCrop(28, scale=(0.8, 1.0)), T.ColorJitter(brightness=0.3, contrast=0.3)]


def _eval_steps(cfg: Config, v1: bool):
    """What the test split gets instead (netdsl's counterpart of RandomResizedCrop(28):
    Resize(28 / 0.875) and CenterCrop(28), torchvision's reference recipe)."""
    if v1:
        from torchvision import transforms as T
    else:
        from torchvision.transforms import v2 as T
    return [] if cfg.augment == "crop" else [T.Resize(32), T.CenterCrop(28)]


# ---- the data: MNIST digits as PNG files --------------------------------------------------


def png_root(cfg: Config, scale: int) -> Path:
    name = f"mnist_png_x{scale}" + (f"_n{cfg.limit}" if cfg.limit else "")
    return Path(cfg.cache) / name


def write_pngs(cfg: Config, scale: int) -> Path:
    """ROOT/train/<label>/<copy>_<index>.png (`scale` copies), ROOT/test/<label>/<index>.png,
    then the marker file; nothing is written when the marker is already there."""
    root = png_root(cfg, scale)
    if (root / MARKER).is_file():
        return root
    import numpy as np
    from PIL import Image
    from torchvision import datasets

    t0 = time.perf_counter()
    counts = {}
    for split, train in (("train", True), ("test", False)):
        ds = datasets.MNIST(cfg.data_root, train=train, download=False)
        images, labels = ds.data.numpy(), ds.targets.tolist()
        n = min(len(labels), cfg.limit) if (train and cfg.limit) else len(labels)
        copies = scale if train else 1
        for d in {str(y) for y in labels[:n]}:
            (root / split / d).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            buf = io.BytesIO()
            img = Image.fromarray(np.ascontiguousarray(images[i]))  # 2-D uint8: mode "L"
            img.save(buf, format="PNG")
            png = buf.getvalue()  # encoded once, written once per copy
            folder = root / split / str(labels[i])
            for c in range(copies):
                name = f"{c}_{i:05d}.png" if train else f"{i:05d}.png"
                (folder / name).write_bytes(png)
        counts[split] = n * copies
    (root / MARKER).write_text(json.dumps({"scale": scale, "limit": cfg.limit, **counts}))
    print(
        f"wrote {counts['train']:,} + {counts['test']:,} PNG files to {root} in "
        f"{time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    return root


# ---- the network ----------------------------------------------------------------------------


def lenet():
    """LeNet as in the seed tutorial (and bench_train.py)."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(256, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )  # fmt: skip


def _seeded(cfg: Config):
    """(model, optimizer) from the same initial weights in every variant."""
    import torch

    torch.manual_seed(cfg.seed)
    model = lenet().to(cfg.device)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def _rss_mb(who: int) -> float:
    kb = resource.getrusage(who).ru_maxrss  # KiB on Linux
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS


# ---- variants ---------------------------------------------------------------------------------

VARIANTS: dict[str, Callable[[Path, Config], Result]] = {}


def variant(name: str):
    def register(fn: Callable[[Path, Config], Result]):
        VARIANTS[name] = fn
        return fn

    return register


def _evaluate(model, loader, device) -> float:
    import torch

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            correct += (model(images).argmax(1) == labels).sum().item()
            total += labels.size(0)
    return correct / total


@variant("tutorial")
def run_tutorial(root: Path, cfg: Config) -> Result:
    """ImageFolder + PIL + torchvision transforms, no workers, loss.item() per step."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision import transforms as T

    device = torch.device(cfg.device)
    model, optimizer = _seeded(cfg)
    criterion = nn.CrossEntropyLoss()

    t0 = time.perf_counter()
    train_tf = T.Compose(
        [T.Grayscale(1), *_augment_steps(cfg, v1=True), T.ToTensor(), T.Normalize(MEAN, STD)]
    )
    test_tf = T.Compose(
        [T.Grayscale(1), *_eval_steps(cfg, v1=True), T.ToTensor(), T.Normalize(MEAN, STD)]
    )
    train_set = datasets.ImageFolder(str(root / "train"), transform=train_tf)
    test_set = datasets.ImageFolder(str(root / "test"), transform=test_tf)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=TEST_BATCH, shuffle=False)
    setup = time.perf_counter() - t0

    times, running_loss = [], 0.0
    for _epoch in range(cfg.epochs):
        _sync(cfg.device)
        t0 = time.perf_counter()
        model.train()
        running_loss = 0.0
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            optimizer.zero_grad()
            loss = criterion(model(images), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        _sync(cfg.device)
        times.append(time.perf_counter() - t0)
    train_rss = _rss_mb(resource.RUSAGE_SELF)
    acc = _evaluate(model, test_loader, device)
    loss = running_loss / len(train_loader)
    return Result(times, len(train_set), acc, setup, loss, train_rss, workers=0)


def _decode_gray(path: str):
    """A PNG file as a (1, H, W) uint8 tensor (libpng through torchvision.io, no PIL)."""
    from torchvision.io import ImageReadMode, decode_image

    return decode_image(path, mode=ImageReadMode.GRAY)


@variant("best")
def run_best(root: Path, cfg: Config) -> Result:
    """torchvision.io decoding and tensor transforms in W persistent workers, prefetching,
    pinned memory on CUDA, set_to_none, the loss summed on the device."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision import transforms as T

    device = torch.device(cfg.device)
    model, optimizer = _seeded(cfg)
    criterion = nn.CrossEntropyLoss()
    cuda = device.type == "cuda"
    w = cfg.workers

    t0 = time.perf_counter()
    to_float = [T.ConvertImageDtype(torch.float32), T.Normalize(MEAN, STD)]  # = ToTensor, Normalize
    train_tf = T.Compose([*_augment_steps(cfg, v1=False), *to_float])
    train_set = datasets.ImageFolder(str(root / "train"), transform=train_tf, loader=_decode_gray)
    test_set = datasets.ImageFolder(
        str(root / "test"),
        transform=T.Compose([*_eval_steps(cfg, v1=False), *to_float]),
        loader=_decode_gray,
    )
    opts = {
        "num_workers": w,
        "pin_memory": cuda,
        "persistent_workers": w > 0,
        "prefetch_factor": 4 if w > 0 else None,
    }
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, **opts)
    test_loader = DataLoader(test_set, batch_size=TEST_BATCH, **opts)
    setup = time.perf_counter() - t0

    times, loss_sum = [], torch.zeros((), device=device)
    for _epoch in range(cfg.epochs):
        _sync(cfg.device)
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        for images, labels in train_loader:
            images = images.to(device, non_blocking=cuda)
            labels = labels.to(device, non_blocking=cuda)
            loss = criterion(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        final_loss = loss_sum.item() / len(train_loader)  # the epoch's one host sync
        times.append(time.perf_counter() - t0)
    train_rss = _rss_mb(resource.RUSAGE_SELF)
    acc = _evaluate(model, test_loader, device)
    return Result(times, len(train_set), acc, setup, final_loss, train_rss, workers=w)


def _run_netdsl(root: Path, cfg: Config, stream: bool) -> Result:
    """The spec above, trained by `netdsl.runtime.runner.run` (what `netdsl run` calls). Epoch
    times are the runner's own (training only); setup runs from loading the spec to the
    trainer's start (parse, plan, scanning the folders, building the model and loaders)."""
    sys.path.insert(0, str(REPO))
    import torchvision  # noqa: F401 -- imported before setup is timed, as in the baselines

    from netdsl.runtime import runner

    marks: dict[str, float] = {}
    start, epoch_end = runner.RunProgress.start, runner.RunProgress.epoch_end

    def on_start(self, info):
        marks.setdefault("start", time.perf_counter())
        return start(self, info)

    def on_epoch_end(self, record, epochs):
        marks["train_rss_mb"] = _rss_mb(resource.RUSAGE_SELF)
        return epoch_end(self, record, epochs)

    runner.RunProgress.start, runner.RunProgress.epoch_end = on_start, on_epoch_end
    try:
        return _run_spec(root, cfg, stream, marks)
    finally:
        runner.RunProgress.start, runner.RunProgress.epoch_end = start, epoch_end


def _run_spec(root: Path, cfg: Config, stream: bool, marks: dict) -> Result:
    import netdsl
    from netdsl.runtime import runner

    with tempfile.TemporaryDirectory(prefix="bench_stream_") as tmp:
        path = Path(tmp) / "lenet_stream.net"
        path.write_text(
            SPEC.format(
                root=json.dumps(root.as_posix()),
                stream=str(stream).lower(),
                workers=cfg.workers,
                batch=cfg.batch_size,
                test_batch=TEST_BATCH,
                epochs=cfg.epochs,
                seed=cfg.seed,
                device=json.dumps(cfg.device),
                augment=AUGMENT[cfg.augment],
            )
        )
        t0 = time.perf_counter()
        r = runner.run(netdsl.load(path), out=Path(tmp) / "runs", progress=False, bar=False)
        history = r["history"]
        return Result(
            [h["seconds"] for h in history],
            r["data"]["train"],
            r["test"]["test.accuracy"],
            marks["start"] - t0,
            history[-1]["train.loss"],
            marks["train_rss_mb"],
            workers=cfg.workers if stream else 0,
            extra={
                "netdsl_samples_per_second": r["samples_per_second"],
                "notes": r.get("notes", []),
            },
        )


@variant("netdsl")
def run_netdsl(root: Path, cfg: Config) -> Result:
    return _run_netdsl(root, cfg, stream=True)


@variant("netdsl-memory")
def run_netdsl_memory(root: Path, cfg: Config) -> Result:
    return _run_netdsl(root, cfg, stream=False)


# ---- harness ----------------------------------------------------------------------------------

SPAWNED: list[str] = []  # programs this process started (children other than workers)


def watch_children() -> None:
    """Keep RUSAGE_CHILDREN to the DataLoader workers. `import torch` runs `ldconfig -p`
    (ctypes.util.find_library, from the CUDA library loader) once torch's libraries are
    loaded: that child, started from a ~430 MB process, would set the children's peak RSS
    before any worker ran. So look libraries up once, now, while this interpreter is small,
    and remember the answers; any other program started later is listed in the row."""
    import ctypes.util
    import functools

    ctypes.util.find_library = functools.cache(ctypes.util.find_library)
    ctypes.util.find_library("dl")

    def hook(event: str, args) -> None:
        if event in ("subprocess.Popen", "os.posix_spawn", "os.system", "os.exec"):
            SPAWNED.append(str(args[0]))

    sys.addaudithook(hook)


def run_one(variant_name: str, scale: int, cfg: Config) -> dict:
    """Run one (variant, scale) in this process and return its row."""
    import multiprocessing

    import torch

    if cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    before = _rss_mb(resource.RUSAGE_CHILDREN), list(SPAWNED)
    res = VARIANTS[variant_name](png_root(cfg, scale), cfg)
    gc.collect()  # the loaders are gone: their workers have been joined (and counted)
    alive = len(multiprocessing.active_children())
    mean_epoch = sum(res.epoch_times) / len(res.epoch_times)
    row = {
        "variant": variant_name,
        "scale": scale,
        "samples_per_s": res.train_samples / mean_epoch,
        "mean_epoch_s": mean_epoch,
        **asdict(res),
        "peak_rss_mb": _rss_mb(resource.RUSAGE_SELF),
        "workers_peak_rss_mb": _rss_mb(resource.RUSAGE_CHILDREN),
        "workers_still_alive": alive,
        "children_peak_rss_before_mb": before[0],  # from other programs, before the run
        "programs_started": SPAWNED[len(before[1]) :],  # during the run: counted in workers MB
        "threads": torch.get_num_threads(),
    }
    if cfg.device.startswith("cuda"):
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def child_args(cfg: Config) -> list[str]:
    out = [
        "--epochs",
        str(cfg.epochs),
        "--device",
        cfg.device,
        "--data-root",
        cfg.data_root,
        "--cache",
        cfg.cache,
        "--seed",
        str(cfg.seed),
        "--batch-size",
        str(cfg.batch_size),
        "--workers",
        str(cfg.workers),
    ]
    if cfg.threads:
        out += ["--threads", str(cfg.threads)]
    if cfg.limit:
        out += ["--limit", str(cfg.limit)]
    out += ["--augment", cfg.augment]
    return out


def run_isolated(variant_name: str, scale: int, cfg: Config) -> dict:
    """Run one (variant, scale) in a fresh interpreter so that its peak RSS is its own."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        f"{variant_name}:{scale}",
        *child_args(cfg),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"{variant_name} x{scale} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratios(rows: list[dict]) -> list[dict]:
    """Each variant against `tutorial` and against `best`, at the same scale."""
    by = {(r["scale"], r["variant"]): r for r in rows}
    out = []
    for r in rows:
        for base in ("tutorial", "best"):
            b = by.get((r["scale"], base))
            if b is None or r["variant"] in (base, "tutorial"):
                continue
            out.append(
                {
                    "scale": r["scale"],
                    "variant": r["variant"],
                    "vs": base,
                    "throughput_x": r["samples_per_s"] / b["samples_per_s"],
                    "main_rss_x": r["peak_rss_mb"] / b["peak_rss_mb"],
                    "accuracy_delta": r["test_accuracy"] - b["test_accuracy"],
                }
            )
    return out


def growth(rows: list[dict]) -> list[dict]:
    """Per variant: peak RSS and throughput at each larger scale over the smallest one."""
    out = []
    for v in dict.fromkeys(r["variant"] for r in rows):
        mine = sorted((r for r in rows if r["variant"] == v), key=lambda r: r["scale"])
        for r in mine[1:]:
            b = mine[0]
            w = b["workers_peak_rss_mb"]
            out.append(
                {
                    "variant": v,
                    "from_scale": b["scale"],
                    "to_scale": r["scale"],
                    "data_x": r["train_samples"] / b["train_samples"],
                    "main_rss_x": r["peak_rss_mb"] / b["peak_rss_mb"],
                    "main_rss_mb": [b["peak_rss_mb"], r["peak_rss_mb"]],
                    "workers_rss_x": r["workers_peak_rss_mb"] / w if w else None,
                    "workers_rss_mb": [w, r["workers_peak_rss_mb"]],
                    "throughput_x": r["samples_per_s"] / b["samples_per_s"],
                }
            )
    return out


def table(rows: list[dict], rats: list[dict], grow: list[dict]) -> str:
    head = (
        f"{'scale':>5} {'variant':<13} {'images':>7} {'samples/s':>10} {'epoch s':>8} "
        f"{'setup s':>8} {'main MB':>8} {'workers MB':>10} {'test acc':>9} {'loss':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        wmb = f"{r['workers_peak_rss_mb']:.0f}" if r["workers"] else "-"
        lines.append(
            f"{'x' + str(r['scale']):>5} {r['variant']:<13} {r['train_samples']:>7} "
            f"{r['samples_per_s']:>10.0f} {r['mean_epoch_s']:>8.2f} {r['setup_s']:>8.2f} "
            f"{r['peak_rss_mb']:>8.0f} {wmb:>10} {r['test_accuracy']:>9.4f} "
            f"{r['final_loss']:>7.4f}"
        )
    if rats:
        lines += ["", f"{'scale':>5} {'ratio':<26} {'throughput':>10} {'main MB':>8} {'Δ acc':>8}"]
        for q in rats:
            name = f"{q['variant']} / {q['vs']}"
            lines.append(
                f"{'x' + str(q['scale']):>5} {name:<26} {q['throughput_x']:>9.2f}x "
                f"{q['main_rss_x']:>7.2f}x {q['accuracy_delta']:>+8.4f}"
            )
    if grow:
        lines += [
            "",
            (
                f"{'growth':<10} {'variant':<13} {'data':>6} {'main MB':>16} "
                f"{'workers MB':>18} {'throughput':>10}"
            ),
        ]
        for g in grow:
            w0, w1 = g["workers_rss_mb"]
            main = f"{g['main_rss_mb'][0]:.0f}→{g['main_rss_mb'][1]:.0f} {g['main_rss_x']:.2f}x"
            work = f"{w0:.0f}→{w1:.0f} {g['workers_rss_x']:.2f}x" if g["workers_rss_x"] else "-"
            lines.append(
                f"{'x' + str(g['from_scale']) + '→x' + str(g['to_scale']):<10} {g['variant']:<13} "
                f"{g['data_x']:>5.1f}x {main:>16} {work:>18} {g['throughput_x']:>9.2f}x"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--scales",
        default="1,10",
        help="comma-separated copies of the 8,000 training digits (default 1,10)",
    )
    ap.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated, from {', '.join(VARIANTS)} (default: all at x1, "
        f"{' and '.join(SCALED_DEFAULT)} at larger scales; given explicitly, "
        "every listed variant runs at every scale)",
    )
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument(
        "--workers",
        type=int,
        default=auto_workers(),
        help="DataLoader workers for best and netdsl (default: cores - 1, 1 to 4)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run every (scale, variant) R times, interleaved, and report its "
        "fastest run; all runs' epoch times go to JSON",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) in every run (default: torch's choice)",
    )
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    ap.add_argument(
        "--data-root",
        default=os.environ.get("NETDSL_DATA_ROOT", str(DEFAULT_ROOT)),
        help="torchvision root holding MNIST/raw (default: ../shared/data)",
    )
    ap.add_argument(
        "--cache",
        default=str(DEFAULT_CACHE),
        help="where the PNG folders are written (default: bench/.cache)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=BATCH)
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    ap.add_argument(
        "--no-isolate",
        action="store_true",
        help="run everything in this process (peak memory is then cumulative)",
    )
    ap.add_argument(
        "--augment",
        choices=sorted(AUGMENT),
        default="crop",
        help="crop: RandomCrop(28, padding=2), which netdsl runs per batch on the device "
        "(default); v2: RandomResizedCrop + ColorJitter, per sample (torchvision v2)",
    )
    ap.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # debug
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child or args.no_isolate:
        watch_children()  # before torch is imported

    cfg = Config(
        epochs=args.epochs,
        device=resolve_device(args.device),
        data_root=args.data_root,
        cache=args.cache,
        seed=args.seed,
        batch_size=args.batch_size,
        workers=args.workers,
        threads=args.threads,
        limit=args.limit,
        augment=args.augment,
    )
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    if args.child:
        v, scale = args.child.split(":")
        print(json.dumps(run_one(v, int(scale), cfg)))
        return 0

    raw = Path(cfg.data_root) / "MNIST" / "raw"
    need = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    missing = [str(raw / f) for f in need if not (raw / f).is_file()]
    if missing:
        print("MNIST not found; expected:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    scales = sorted({int(s) for s in args.scales.split(",") if s})
    chosen = args.variants.split(",") if args.variants else list(VARIANTS)
    for v in chosen:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    pairs = [
        (k, v) for k in scales for v in chosen if args.variants or k == 1 or v in SCALED_DEFAULT
    ]
    for k in scales:
        write_pngs(cfg, k)

    load_before = os.getloadavg()
    runs: dict[tuple[int, str], list[dict]] = {p: [] for p in pairs}
    for r in range(max(1, args.repeat)):
        for (k, v), done in runs.items():
            print(f"… x{k} / {v} (run {r + 1}/{args.repeat})", file=sys.stderr, flush=True)
            done.append(run_one(v, k, cfg) if args.no_isolate else run_isolated(v, k, cfg))
    rows = []
    for group in runs.values():
        group.sort(key=lambda row: row["mean_epoch_s"])
        row = dict(group[0])  # the fastest run
        row["runs"] = len(group)
        row["mean_epoch_s_all"] = [g["mean_epoch_s"] for g in group]
        rows.append(row)
    rats, grow = ratios(rows), growth(rows)
    import torch

    load_after = os.getloadavg()
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": cfg.device,
        "threads": rows[0]["threads"] if rows else None,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else None,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    print(
        f"LeNet on MNIST PNG files ({AUGMENT[cfg.augment]}), batch {cfg.batch_size}, "
        f"{cfg.epochs} epoch(s), device "
        f"{cfg.device}, {env['threads']} threads, {cfg.workers} worker(s), seed {cfg.seed}, "
        f"best of {max(1, args.repeat)} run(s); load average (1/5/15 min) "
        f"{'/'.join(f'{x:.2f}' for x in load_before)} before, "
        f"{'/'.join(f'{x:.2f}' for x in load_after)} after"
    )
    print(table(rows, rats, grow))
    stray = [f"x{r['scale']} {r['variant']}" for r in rows if r["workers_still_alive"]]
    if stray:
        print(
            f"note: workers still alive at the end of {', '.join(stray)}: their peak RSS "
            "is not counted",
            file=sys.stderr,
        )
    for r in rows:
        if r["programs_started"]:
            print(
                f"note: x{r['scale']} {r['variant']} started {', '.join(r['programs_started'])}: "
                "workers MB is the peak of those and the workers",
                file=sys.stderr,
            )
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "config": {**asdict(cfg), "repeat": args.repeat, "scales": scales},
                    "env": env,
                    "results": rows,
                    "ratios": rats,
                    "growth": grow,
                },
                indent=2,
            )
        )
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
