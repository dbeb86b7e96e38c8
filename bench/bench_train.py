#!/usr/bin/env python
"""Training-throughput baselines for the seed networks on MNIST, in plain PyTorch.

Two ways of training the same network with the same seed, batch size and optimizer:

* ``tutorial`` -- the seed tutorials' loop as written: ``torchvision.datasets.MNIST`` with
  ``Compose([ToTensor(), Normalize((0.1307,), (0.3081,))])``, ``DataLoader(batch_size=64,
  shuffle=True)``, ``.to(device)`` per batch, ``optimizer.zero_grad()``, ``loss.item()`` per
  step.
* ``best`` -- a careful hand-written loop: the whole split normalised once and kept on the
  device, a ``randperm`` per epoch and slicing, ``zero_grad(set_to_none=True)``, the loss
  summed on the device (one sync per epoch).

The baselines deliberately do not import netdsl. A third variant that trains through
``netdsl`` plugs in as one more function registered with ``@variant("netdsl")`` (same
signature as the two below, returning a `Result`); every variant other than ``tutorial`` is
reported as a ratio against ``tutorial``.

Each (variant, network) pair runs in a fresh Python process so that its peak memory is its
own (``ru_maxrss`` is a high-water mark of the whole process). See bench/README.md.

    python bench/bench_train.py --epochs 1 --device cpu --json runs/bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

NETWORKS = ("mlp", "lenet")
BATCH = 64
TEST_BATCH = 1000
MEAN, STD = (0.1307,), (0.3081,)
DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass
class Config:
    epochs: int = 3
    device: str = "cpu"
    data_root: str = str(DEFAULT_ROOT)
    seed: int = 0
    batch_size: int = BATCH
    threads: int | None = None


@dataclass
class Result:
    """What one variant reports for one network (peak memory is filled in by the harness)."""

    epoch_times: list[float]  # seconds per epoch, training only (data loading included)
    train_samples: int  # samples seen per epoch
    test_accuracy: float
    setup_s: float  # building datasets / loading tensors onto the device, before epoch 1
    final_loss: float  # mean training loss of the last epoch
    extra: dict = field(default_factory=dict)


# ---- networks (the seed tutorials') -----------------------------------------------------


def build_network(name: str):
    """(model, optimizer factory) for a seed network."""
    import torch
    from torch import nn

    if name == "mlp":
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        return model, lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "lenet":
        model = nn.Sequential(
            nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(256, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10),
        )
        return model, lambda params: torch.optim.Adam(params, lr=1e-3)
    raise SystemExit(f"unknown network {name!r}; choose from {', '.join(NETWORKS)}")


def _seeded_model(net: str, cfg: Config):
    """Every variant starts from the same weights: seed, then build."""
    import torch

    torch.manual_seed(cfg.seed)
    model, make_opt = build_network(net)
    model = model.to(cfg.device)
    return model, make_opt(model.parameters())


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---- variants ---------------------------------------------------------------------------

VARIANTS: dict[str, Callable[[str, Config], Result]] = {}


def variant(name: str):
    def register(fn: Callable[[str, Config], Result]):
        VARIANTS[name] = fn
        return fn

    return register


@variant("tutorial")
def run_tutorial(net: str, cfg: Config) -> Result:
    """The seed tutorials' loop, unchanged apart from download=False (no network here)."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    device = torch.device(cfg.device)
    model, optimizer = _seeded_model(net, cfg)
    criterion = nn.CrossEntropyLoss()

    t0 = time.perf_counter()
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    train_set = datasets.MNIST(cfg.data_root, train=True, download=False, transform=transform)
    test_set = datasets.MNIST(cfg.data_root, train=False, download=False, transform=transform)
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
            outputs = model(images)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        _sync(cfg.device)
        times.append(time.perf_counter() - t0)

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in test_loader:
            images, labels = images.to(device), labels.to(device)
            _, predicted = torch.max(model(images), 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return Result(times, len(train_set), correct / total, setup,
                  running_loss / len(train_loader))


def _mnist_tensors(root: str, train: bool, device):
    """A split as normalised float32 (N, 1, 28, 28) on `device`, plus int64 labels."""
    from torchvision import datasets

    ds = datasets.MNIST(root, train=train, download=False)
    x = ds.data.unsqueeze(1).float().div(255).sub(MEAN[0]).div(STD[0])
    return x.to(device), ds.targets.to(device)


@variant("best")
def run_best(net: str, cfg: Config) -> Result:
    """Preloaded device tensors, randperm + slicing, set_to_none, no per-step syncs."""
    import torch
    from torch import nn

    device = torch.device(cfg.device)
    model, optimizer = _seeded_model(net, cfg)
    criterion = nn.CrossEntropyLoss()

    _sync(cfg.device)
    t0 = time.perf_counter()
    x, y = _mnist_tensors(cfg.data_root, True, device)
    xt, yt = _mnist_tensors(cfg.data_root, False, device)
    _sync(cfg.device)
    setup = time.perf_counter() - t0

    n, bs = x.shape[0], cfg.batch_size
    steps = -(-n // bs)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    times, loss_sum = [], torch.zeros((), device=device)
    for _epoch in range(cfg.epochs):
        _sync(cfg.device)
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        perm = torch.randperm(n, device=device, generator=gen)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = criterion(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        _sync(cfg.device)
        times.append(time.perf_counter() - t0)

    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.no_grad():
        for i in range(0, xt.shape[0], TEST_BATCH):
            correct += (model(xt[i:i + TEST_BATCH]).argmax(1) == yt[i:i + TEST_BATCH]).sum()
    return Result(times, n, correct.item() / xt.shape[0], setup, loss_sum.item() / steps)


@variant("netdsl")
def run_netdsl(net: str, cfg: Config) -> Result:
    """The seed spec (specs/mlp.net, specs/lenet.net) trained by netdsl's own loop, the one
    `netdsl run` calls, with the baselines' pipeline, seed and batch size. Only the run
    folder around it (checkpoints, plot, JSON) is left out, as the baselines write none."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import netdsl
    from netdsl.runtime import loop
    from netdsl.runtime.data import load_data

    spec = netdsl.load(Path(__file__).resolve().parents[1] / "specs" / f"{net}.net")
    settings = spec.plan(
        epochs=cfg.epochs, seed=cfg.seed, batch_size=cfg.batch_size, eval_batch_size=TEST_BATCH,
        device=cfg.device, checkpoint=None, data=f'MNIST(root={json.dumps(cfg.data_root)}, '
        f"transform=[ToTensor, Normalize({MEAN[0]}, {STD[0]})])").settings()

    class Quiet(loop.Progress):
        def start(self, info):
            pass

        def epoch_end(self, record, epochs):
            pass

    _sync(cfg.device)
    t0 = time.perf_counter()
    data = load_data(**settings["data"])
    data.loader("test", TEST_BATCH, device=cfg.device)  # the splits move to the device once
    _sync(cfg.device)
    setup = time.perf_counter() - t0
    r = loop.fit(spec.build, data, settings, device=torch.device(cfg.device), progress=Quiet())
    return Result([h["seconds"] for h in r["history"]], data.train.n,
                  r["test"]["test.accuracy"], setup, r["history"][-1]["train.loss"])


# ---- harness ----------------------------------------------------------------------------


def _peak_memory(device: str) -> dict:
    import torch

    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if sys.platform == "darwin":
        rss_kb //= 1024  # bytes on macOS
    out = {"peak_rss_mb": rss_kb / 1024}
    if device.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_one(variant_name: str, net: str, cfg: Config) -> dict:
    """Run one pair in this process and return its row."""
    import torch

    if cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    res = VARIANTS[variant_name](net, cfg)
    mean_epoch = sum(res.epoch_times) / len(res.epoch_times)
    row = {
        "variant": variant_name,
        "network": net,
        "samples_per_s": res.train_samples / mean_epoch,
        "mean_epoch_s": mean_epoch,
        **asdict(res),
        **_peak_memory(cfg.device),
        "threads": torch.get_num_threads(),
    }
    row["peak_mb"] = row.get("peak_cuda_mb", row["peak_rss_mb"])
    return row


def run_isolated(variant_name: str, net: str, cfg: Config) -> dict:
    """Run one pair in a fresh interpreter so that its peak RSS is its own."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", f"{variant_name}:{net}",
           "--epochs", str(cfg.epochs), "--device", cfg.device, "--data-root", cfg.data_root,
           "--seed", str(cfg.seed), "--batch-size", str(cfg.batch_size)]
    if cfg.threads:
        cmd += ["--threads", str(cfg.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{variant_name}/{net} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratios(rows: list[dict]) -> list[dict]:
    """Every non-tutorial variant against the tutorial, per network."""
    base = {r["network"]: r for r in rows if r["variant"] == "tutorial"}
    out = []
    for r in rows:
        b = base.get(r["network"])
        if r["variant"] == "tutorial" or b is None:
            continue
        out.append({
            "network": r["network"],
            "variant": r["variant"],
            "vs": "tutorial",
            "throughput_x": r["samples_per_s"] / b["samples_per_s"],
            "epoch_time_x": r["mean_epoch_s"] / b["mean_epoch_s"],
            "peak_memory_x": r["peak_mb"] / b["peak_mb"],
            "accuracy_delta": r["test_accuracy"] - b["test_accuracy"],
        })
    return out


def table(rows: list[dict], rats: list[dict], device: str) -> str:
    mem = "peak CUDA MB" if device.startswith("cuda") else "peak RSS MB"
    head = f"{'network':<8} {'variant':<10} {'samples/s':>10} {'epoch s':>8} {'setup s':>8} " \
           f"{mem:>13} {'test acc':>9} {'loss':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['network']:<8} {r['variant']:<10} {r['samples_per_s']:>10.0f} "
            f"{r['mean_epoch_s']:>8.2f} {r['setup_s']:>8.2f} {r['peak_mb']:>13.0f} "
            f"{r['test_accuracy']:>9.4f} {r['final_loss']:>7.4f}")
    if rats:
        lines += ["", (f"{'network':<8} {'variant':<10} {'throughput':>11} {'epoch time':>11} "
                       f"{'memory':>8} {'Δ acc':>8}   (ratio to tutorial)")]
        for q in rats:
            lines.append(
                f"{q['network']:<8} {q['variant']:<10} {q['throughput_x']:>10.2f}x "
                f"{q['epoch_time_x']:>10.2f}x {q['peak_memory_x']:>7.2f}x "
                f"{q['accuracy_delta']:>+8.4f}")
    return "\n".join(lines)


def resolve_device(spec: str) -> str:
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    return spec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    ap.add_argument("--data-root", default=os.environ.get("NETDSL_DATA_ROOT", str(DEFAULT_ROOT)),
                    help="torchvision root holding MNIST/raw (default: ../shared/data)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=BATCH)
    ap.add_argument("--networks", default=",".join(NETWORKS), help="comma-separated")
    ap.add_argument("--variants", default=None,
                    help=f"comma-separated, from {', '.join(VARIANTS)} (default: all)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every pair R times, interleaved, and report its fastest run "
                         "(other load only ever adds time); all runs' epoch times go to JSON")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads(N) in every run (default: torch's choice)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    ap.add_argument("--no-isolate", action="store_true",
                    help="run every pair in this process (peak memory is then cumulative)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    cfg = Config(epochs=args.epochs, device=resolve_device(args.device),
                 data_root=args.data_root, seed=args.seed, batch_size=args.batch_size,
                 threads=args.threads)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    if args.child:
        v, net = args.child.split(":")
        print(json.dumps(run_one(v, net, cfg)))
        return 0

    raw = Path(cfg.data_root) / "MNIST" / "raw"
    need = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    missing = [str(raw / f) for f in need if not (raw / f).is_file()]
    if missing:
        print("MNIST not found; expected:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    nets = [n for n in args.networks.split(",") if n]
    variants = args.variants.split(",") if args.variants else list(VARIANTS)
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")

    load_before = os.getloadavg()[0]
    runs: dict[tuple[str, str], list[dict]] = {(n, v): [] for n in nets for v in variants}
    for r in range(max(1, args.repeat)):
        for (net, v), done in runs.items():
            print(f"… {net} / {v} (run {r + 1}/{args.repeat})", file=sys.stderr, flush=True)
            done.append(run_one(v, net, cfg) if args.no_isolate
                                else run_isolated(v, net, cfg))
    rows = []
    for group in runs.values():
        group.sort(key=lambda row: row["mean_epoch_s"])
        row = dict(group[0])  # the fastest run
        row["runs"] = len(group)
        row["mean_epoch_s_all"] = [g["mean_epoch_s"] for g in group]
        rows.append(row)
    rats = ratios(rows)
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "device": cfg.device, "threads": rows[0]["threads"] if rows else None,
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "gpu": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else None,
           "loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0]}
    print(f"MNIST train {rows[0]['train_samples'] if rows else '?'} samples, batch "
          f"{cfg.batch_size}, {cfg.epochs} epoch(s), device {cfg.device}, "
          f"{env['threads']} threads, seed {cfg.seed}, best of {max(1, args.repeat)} run(s); "
          f"load average {load_before:.2f} before, {env['loadavg_1min_after']:.2f} after")
    print(table(rows, rats, cfg.device))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"config": {**asdict(cfg), "repeat": args.repeat}, "env": env, "results": rows,
                                   "ratios": rats}, indent=2))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
