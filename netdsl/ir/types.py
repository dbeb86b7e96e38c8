"""Tensor types: the shape (without the batch dimension) and dtype of a value."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool")
INT_DTYPES = ("int64", "int32", "uint8")


class TensorType(BaseModel):
    """A value's type. `shape` leaves out the batch dimension; `why` says how the last
    dimension came about (`16*5*5` after a Flatten), for error messages."""

    model_config = ConfigDict(frozen=True)

    shape: tuple[int, ...]
    dtype: str = "float32"
    why: str | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def with_shape(self, shape, why: str | None = None) -> "TensorType":
        return TensorType(shape=tuple(shape), dtype=self.dtype, why=why)

    def __str__(self) -> str:
        return "[" + ", ".join(map(str, self.shape)) + "]" + ("" if self.dtype == "float32" else f" {self.dtype}")

    def pretty(self) -> str:
        """`16×4×4` style, for diagrams and tables."""
        return "×".join(map(str, self.shape)) or "scalar"

    def batched(self) -> str:
        """`(B, 16, 4, 4)` style, for comments in generated code."""
        return "(" + ", ".join(["B", *map(str, self.shape)]) + ")"
