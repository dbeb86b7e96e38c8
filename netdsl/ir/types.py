"""Tensor types: the shape (without the batch dimension) and dtype of a value."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool")
INT_DTYPES = ("int64", "int32", "uint8")


class TensorType(BaseModel):
    """A value's type. `shape` leaves out the batch dimension; `why` says how the last
    dimension came about (`16*5*5` after a Flatten), for error messages.

    A learned tensor (`Parameter(1, 1, 768)`), a buffer and `arange(x.size(1))` have no batch:
    `has_batch` is false and `shape` is the whole tensor's, as torch sees it. Such a value meets
    batched ones by torch's broadcasting (`x + pos`), and a layer applied to it reads its first
    dimension where a batch would be, as torch's layers do."""

    model_config = ConfigDict(frozen=True)

    shape: tuple[int, ...]
    dtype: str = "float32"
    why: str | None = None
    has_batch: bool = True

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def with_shape(self, shape, why: str | None = None) -> "TensorType":
        return TensorType(shape=tuple(shape), dtype=self.dtype, why=why, has_batch=self.has_batch)

    def unbatched(self) -> "TensorType":
        """This type as a value without a batch: its first dimension becomes one of its own."""
        return self if not self.has_batch else self.model_copy(update={"has_batch": False})

    def __str__(self) -> str:
        return ("[" + ", ".join(map(str, self.shape)) + "]" + ("" if self.dtype == "float32" else f" {self.dtype}")
                + ("" if self.has_batch else " (no batch)"))

    def pretty(self) -> str:
        """`16×4×4` style, for diagrams and tables."""
        return "×".join(map(str, self.shape)) or "scalar"

    def batched(self) -> str:
        """`(B, 16, 4, 4)` style, for comments in generated code."""
        return "(" + ", ".join(["B"] * self.has_batch + [*map(str, self.shape)]) + ")"
