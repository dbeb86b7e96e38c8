#!/usr/bin/env python
"""Training in several processes: samples/s of one spec under `netdsl run --nproc N`.

The spec (LeNet on the real MNIST digits of --data-root, Adam, global batch 64, seed 0) is
run by `netdsl run --json` with N = 1, 2, ... processes (gloo on the CPU; on a CUDA machine
`--device cuda` runs one process per GPU over nccl). Reported per N: training samples/s (the
runner's own figure: training only, evaluation not counted), seconds per epoch, wall seconds
of the whole command (start-up of the processes included), the last epoch's training loss
and the test accuracy, which should agree across N (the same global batches).

    python bench/bench_distributed.py --nproc 1,2 --epochs 2 --json runs/bench_dist.json

On a 2-core machine no speed-up is expected: two processes share the two cores that one
process's threads use, and every step adds an all-reduce of the gradients.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data"

SPEC = """\
model LeNet {{
  input image: [1, 28, 28]
  image -> Conv2d(6, 5) -> ReLU -> MaxPool2d(2) -> Conv2d(16, 5) -> ReLU -> MaxPool2d(2)
        -> Flatten -> Linear(120) -> ReLU -> Linear(84) -> ReLU -> Linear(10) -> logits
  output logits
}}
train LeNet {{
  data = MNIST(root={root}, transform=[ToTensor, Normalize(0.1307, 0.3081)])
  batch_size = {batch}
  epochs = {epochs}
  optimizer = Adam(lr=1e-3)
  metrics = [accuracy]
  checkpoint = none
  seed = 0
  device = {device}
  {distributed}
}}
"""


def one(nproc: int, args, folder: Path) -> dict:
    spec = folder / f"lenet_{nproc}.net"
    spec.write_text(SPEC.format(root=json.dumps(str(args.data_root)), batch=args.batch_size,
                                epochs=args.epochs, device=json.dumps(args.device),
                                distributed=(f'distributed = Distributed(strategy="{args.strategy}")'
                                             if args.strategy != "ddp" else "")))
    cmd = [sys.executable, "-m", "netdsl", "run", str(spec), "--json", "--out", str(folder / "runs")]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"--nproc {nproc} failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout)
    epochs = [h["seconds"] for h in res["history"]]
    return {
        "nproc": nproc,
        "samples_per_second": res["samples_per_second"],
        "epoch_seconds": min(epochs),
        "wall_seconds": round(wall, 2),
        "train_loss": res["history"][-1]["train.loss"],
        "test_accuracy": res["test"]["test.accuracy"],
        "notes": [n for n in res.get("notes", []) if n.startswith("distributed")],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nproc", default="1,2", help="process counts, comma-separated")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, a GPU each)")
    ap.add_argument("--strategy", default="ddp", choices=["ddp", "fsdp"])
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS for every process (default: torchrun's choice: "
                         "cores / processes)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per N; the fastest is kept")
    ap.add_argument("--data-root", default=os.environ.get("NETDSL_DATA_ROOT", DEFAULT_ROOT))
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_dist_") as tmp:
        for n in (int(x) for x in args.nproc.split(",")):
            runs = [one(n, args, Path(tmp)) for _ in range(max(1, args.repeat))]
            rows.append(max(runs, key=lambda r: r["samples_per_second"]))
    print(f"LeNet on MNIST, {args.epochs} epoch(s), global batch {args.batch_size}, "
          f"device {args.device}, strategy {args.strategy}, {os.cpu_count()} cores")
    print(f"{'nproc':>5} {'samples/s':>10} {'epoch s':>8} {'wall s':>7} {'loss':>8} {'test acc':>9}")
    for r in rows:
        print(f"{r['nproc']:>5} {r['samples_per_second']:>10,.0f} {r['epoch_seconds']:>8.2f} "
              f"{r['wall_seconds']:>7.1f} {r['train_loss']:>8.4f} {r['test_accuracy']:>9.4f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"config": vars(args), "rows": rows}, indent=2,
                                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
