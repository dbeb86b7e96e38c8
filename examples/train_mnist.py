"""Train the README's MNIST network from Python, then evaluate the saved weights.

    python examples/train_mnist.py --data-root ../shared/data
    python examples/train_mnist.py --data-root ../shared/data --epochs 1 --lr 1e-3

`netdsl.fit` takes the same settings as `netdsl run --set`: keyword arguments override the
spec's `train` section (`optimizer__lr=...` is `--set optimizer.lr=...`), and mistakes raise
`netdsl.NetdslError` with the same FILE:LINE:COL diagnostics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import netdsl

SPEC = Path(__file__).resolve().parents[1] / "specs" / "mnist.net"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default="data", help="where MNIST lives (default: data)")
    ap.add_argument("--epochs", type=int, help="override the spec's epochs")
    ap.add_argument("--lr", type=float, help="override the optimizer's learning rate")
    ap.add_argument("--out", default="runs", help="folder for run folders (default: runs)")
    args = ap.parse_args()

    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.lr is not None:
        overrides["optimizer__lr"] = args.lr
    try:
        result = netdsl.fit(SPEC, data_root=args.data_root, out=args.out, **overrides)
    except netdsl.NetdslError as exc:
        raise SystemExit(exc.format()) from None

    print(f"status: {result['status']}; best {result['best']['monitor']} "
          f"{result['best']['value']:.4f} at epoch {result['best']['epoch']}")
    print(f"the trained module: {type(result.model).__name__}, "
          f"{sum(p.numel() for p in result.model.parameters()):,} parameters")

    # The best epoch's checkpoint, evaluated on the test split with the plan's metrics.
    scores = netdsl.evaluate(SPEC, result["files"]["best"], data_root=args.data_root)
    print("best checkpoint on the test split:",
          ", ".join(f"{k} {v:.4f}" for k, v in scores["metrics"].items()))


if __name__ == "__main__":
    main()
