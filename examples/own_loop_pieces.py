"""Use netdsl's pieces in your own program: the validated plan as plain settings, the
in-memory data, the model, and the same training loop `netdsl run` uses.

    python examples/own_loop_pieces.py --data-root ../shared/data

This is what `netdsl run` does, without the run folder; a file made by `netdsl compile`
contains the same loop and data code, so it trains and reports the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import netdsl
from netdsl.runtime import loop
from netdsl.runtime.data import load_data

SPEC = Path(__file__).resolve().parents[1] / "specs" / "lenet.net"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default="data", help="where MNIST lives (default: data)")
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()

    spec = netdsl.load(SPEC)
    plan = spec.plan(epochs=args.epochs, data__root=args.data_root, checkpoint=None,
                     optimizer="AdamW(lr=2e-3, weight_decay=1e-4)")
    settings = plan.settings()  # plain JSON-able values: what the loop reads
    print("optimizer:", settings["optimizer"], "loss:", settings["losses"][0]["name"])

    data = load_data(**settings["data"])  # whole splits as tensors
    print(data.info.describe())

    # fit() seeds, builds the model (spec.build), trains, and evaluates on the test split.
    result = loop.fit(spec.build, data, settings, device="cpu", model_name=plan.model)
    print("test:", {k: round(v, 4) for k, v in result["test"].items()})

    # The same metrics for any module and split, computed as during training:
    print("train split:", loop.evaluate(result["model"], data, settings, split="train"))


if __name__ == "__main__":
    main()
