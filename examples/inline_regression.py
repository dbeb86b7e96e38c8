"""A spec written in Python: seed tutorial 002's linear regression, trained and used.

    python examples/inline_regression.py

The data is inline (`tensors(X=..., y=...)`), so nothing is downloaded. netdsl reads y as one
target per sample (shape [1], like the model's output) and says so in the result's notes.
"""

from __future__ import annotations

import tempfile

import torch

import netdsl

SPEC = """
model LinearRegression {
  input x: [2]
  x -> Linear(1) -> y
  output y
}

train LinearRegression {
  data = tensors(X=[[1, 2], [3, 4], [5, 6]], y=[2, 4, 6])
  batch_size = 3
  epochs = 1000
  loss = MSELoss(y, target)
  optimizer = SGD(lr=0.01)
  checkpoint = none
}
"""


def main() -> None:
    spec = netdsl.loads(SPEC, "linear_regression")
    print(spec.plan().describe())
    with tempfile.TemporaryDirectory() as out:
        result = netdsl.fit(spec, out=out, progress=False)
    for note in result["notes"]:
        print(note)
    final = result["final"]["train.loss"]
    print(f"final training loss {final:.2e} after {result['epochs']} epochs")
    model = result.model.eval()
    with torch.no_grad():
        x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
        print("predictions for x1, x2 = (1, 2), (3, 4), (5, 6), (7, 8):",
              [round(v, 3) for v in model(x).flatten().tolist()])


if __name__ == "__main__":
    main()
