"""Tensor types: the shape (without the batch dimension) and dtype of a value."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict
from typing_extensions import Annotated

from .dims import Dim, Sym, substitute

DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool")
INT_DTYPES = ("int64", "int32", "uint8")


def _size(v: Any) -> int | Sym:
    """A dimension: a number, or a symbolic size over declared dimensions (`H/4`)."""
    if type(v) is int or isinstance(v, Sym):  # (every size of every type: the common cases first)
        return v
    if isinstance(v, Fraction) and v.denominator == 1:
        return v.numerator
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError(f"a size is a whole number, not {v!r}")
    return int(v)


Size = Annotated[Any, BeforeValidator(_size)]


class TensorType(BaseModel):
    """A value's type. `shape` leaves out the batch dimension; `why` says how the last
    dimension came about (`16*5*5` after a Flatten), for error messages.

    A learned tensor (`Parameter(1, 1, 768)`), a buffer and `arange(x.size(1))` have no batch:
    `has_batch` is false and `shape` is the whole tensor's, as torch sees it. Such a value meets
    batched ones by torch's broadcasting (`x + pos`), and a layer applied to it reads its first
    dimension where a batch would be, as torch's layers do."""

    model_config = ConfigDict(frozen=True)

    shape: tuple[Size, ...]
    dtype: str = "float32"
    why: str | None = None
    has_batch: bool = True
    top: Optional[Size] = None  # the largest value an integer tensor holds, where known
    #                             (`arange(T)`: T - 1), for the Embedding it indexes

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def symbolic(self) -> bool:
        return any(isinstance(d, Sym) for d in self.shape)

    def dims(self) -> set[Dim]:
        """The declared dimensions its sizes depend on."""
        return {d for s in self.shape if isinstance(s, Sym) for d in s.dims()}

    def at(self, values: dict[Dim, Any]) -> "TensorType":
        """This type with dimensions replaced (internal values: the size / step, or sizes)."""
        return self.with_shape((substitute(d, values) for d in self.shape), self.why).model_copy(
            update={"top": substitute(self.top, values)})

    def concrete(self, sizes: dict[str, int] | None = None) -> "TensorType":
        """This type at declared sizes by name (`{"H": 224}`); by default each dimension's
        smallest admissible size."""
        dims = self.dims()
        if not dims:
            return self
        sizes = {**{d.name: d.first for d in dims}, **(sizes or {})}
        for d in dims:
            d.check(sizes[d.name])
        return self.at({d: sizes[d.name] // d.step for d in dims})

    def match(self, shape) -> dict[Dim, int] | None:
        """The dimensions' internal values (size / step) under which this type's shape is the
        concrete `shape` (a data sample's), or None if no admissible sizes give it."""
        if len(shape) != len(self.shape):
            return None
        bound: dict[Dim, int] = {}
        for want, got in zip(self.shape, shape):
            if not isinstance(want, Sym):
                if want != got:
                    return None
                continue
            (d,) = want.dims() if len(want.dims()) == 1 else (None,)
            if d is None or want != d.size() or not d.admits(got) or bound.get(d, got // d.step) != got // d.step:
                return None
            bound[d] = got // d.step
        return bound

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
        return "×".join(f"({d})" if " " in str(d) else str(d) for d in self.shape) or "scalar"

    def batched(self) -> str:
        """`(B, 16, 4, 4)` style, for comments in generated code."""
        return "(" + ", ".join(["B"] * self.has_batch + [*map(str, self.shape)]) + ")"
