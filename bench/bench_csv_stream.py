#!/usr/bin/env python
"""Streaming a CSV file: peak memory as the file grows 10x, and rows per second.

A table of N rows (16 numeric columns and a class label, seeded) is written once per size;
then `netdsl.runtime.runner.run` trains a small MLP on it for one epoch, streamed
(``CSV(..., stream=true, workers=W)``) and, for the smaller sizes, in memory
(``stream=false``). Each run is a fresh interpreter, so its peak RSS (``RUSAGE_SELF``; the
DataLoader workers' from ``RUSAGE_CHILDREN``) is its own. Reported per run: the file's size,
the checking pass plus setup (seconds before epoch 1), training rows/s, peak RSS.

    python bench/bench_csv_stream.py --rows 100000,1000000 --json runs/bench_csv.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = 16

SPEC = """\
model MLP {{
  input features: [{cols}]
  features -> Linear(64) -> ReLU -> Linear(4) -> logits
  output logits
}}
train MLP {{
  data = CSV(path={path}, targets="label", stream={stream}, workers={workers})
  loss = CrossEntropyLoss(logits, target)
  batch_size = 256
  epochs = 1
  optimizer = Adam(lr=1e-3)
  seed = 0
  device = "cpu"
}}
"""


def write_table(folder: Path, rows: int) -> Path:
    """`rows` rows of 16 seeded values and a label from a fixed linear rule (cached)."""
    import torch

    path = folder / f"table_{rows}.csv"
    if path.is_file():
        return path
    g = torch.Generator().manual_seed(0)
    w = torch.randn(COLUMNS, 4, generator=g)
    tmp = path.with_suffix(".part")
    with open(tmp, "w") as f:
        f.write(",".join(f"x{i}" for i in range(COLUMNS)) + ",label\n")
        for start in range(0, rows, 100_000):
            x = torch.randn(min(100_000, rows - start), COLUMNS, generator=g)
            y = (x @ w).argmax(1)
            f.writelines(
                ",".join(f"{v:.4f}" for v in r) + f",{int(c)}\n"
                for r, c in zip(x.tolist(), y.tolist())
            )
    tmp.replace(path)
    return path


def child(path: str, stream: bool, workers: int) -> dict:
    sys.path.insert(0, str(REPO))
    import netdsl
    from netdsl.runtime import runner

    marks: dict[str, float] = {}
    start = runner.RunProgress.start

    def on_start(self, info):
        marks.setdefault("start", time.perf_counter())
        return start(self, info)

    runner.RunProgress.start = on_start
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "csv.net"
        spec.write_text(SPEC.format(cols=COLUMNS, path=json.dumps(path),
                                    stream=str(stream).lower(), workers=workers))
        t0 = time.perf_counter()
        r = runner.run(netdsl.load(spec), out=Path(tmp) / "runs", progress=False, bar=False)
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "setup_s": marks["start"] - t0,
        "rows_per_s": r["samples_per_second"],
        "main_mb": kb / 1024,
        "workers_mb": kids / 1024 if stream and workers else None,
        "loss": r["history"][-1]["train.loss"],
        "note": next((n for n in r.get("notes", []) if n.startswith("data:")), ""),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="100000,1000000", help="table sizes, comma-separated")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--memory-up-to", type=int, default=1_000_000,
                    help="also train in memory for tables of at most this many rows")
    ap.add_argument("--cache", default=str(REPO / "bench" / ".cache"))
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        path, stream, workers = args.child.split("|")
        print(json.dumps(child(path, stream == "1", int(workers))))
        return 0
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows_list = [int(r) for r in args.rows.split(",")]
    out = []
    print(f"{'rows':>10} {'file MB':>8} {'path':>9} {'setup s':>8} {'rows/s':>8} "
          f"{'main MB':>8} {'workers MB':>10}")
    for rows in rows_list:
        path = write_table(cache, rows)
        mb = path.stat().st_size / 2**20
        for stream in (True, False):
            if not stream and rows > args.memory_up_to:
                continue
            arg = f"{path}|{int(stream)}|{args.workers}"
            r = subprocess.run([sys.executable, __file__, "--child", arg], capture_output=True,
                               text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
            res = json.loads(r.stdout.strip().splitlines()[-1])
            res.update(rows=rows, file_mb=mb, streamed=stream)
            out.append(res)
            w = f"{res['workers_mb']:.0f}" if res["workers_mb"] else "-"
            print(f"{rows:>10,} {mb:>8.1f} {'streamed' if stream else 'memory':>9} "
                  f"{res['setup_s']:>8.1f} {res['rows_per_s']:>8.0f} {res['main_mb']:>8.0f} "
                  f"{w:>10}", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
