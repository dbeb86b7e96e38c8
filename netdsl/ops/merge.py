"""Merges: Add and Mul (`a + b`, `a * b`, with broadcasting) and Concat."""

from __future__ import annotations

from typing import ClassVar, Literal

from ..ir.types import TensorType
from .base import Int, Op, ShapeError, dim_index
from .registry import register


def broadcast(a: TensorType, b: TensorType) -> tuple[int, ...]:
    out = []
    for i in range(1, max(a.rank, b.rank) + 1):
        x = a.shape[-i] if i <= a.rank else 1
        y = b.shape[-i] if i <= b.rank else 1
        if x != y and 1 not in (x, y):
            raise ShapeError(f"shapes {a} and {b} do not match (dimension {max(a.rank, b.rank) - i}: "
                             f"{x} vs {y})")
        out.append(max(x, y))
    return tuple(reversed(out))


def align_batch(ins: list[TensorType]) -> tuple[list[TensorType], bool]:
    """Values with and without a batch, lined up as torch broadcasts them (from the right): an
    unbatched value becomes the per-sample shape it broadcasts as, its size at the batch's
    place being 1. Returns the types and whether the result has a batch."""
    batched = [t for t in ins if t.has_batch]
    if not batched:
        return ins, False
    if len(batched) == len(ins):
        return ins, True
    full = batched[0].rank + 1
    out = []
    for t in ins:
        if t.has_batch:
            out.append(t)
            continue
        if t.rank > full:
            raise ShapeError(f"{t} has more dimensions than {batched[0]} with its batch: torch would "
                             "put the batch in the middle")
        padded = (1,) * (full - t.rank) + t.shape
        if padded[0] != 1:
            raise ShapeError(f"{t} lines up its size {padded[0]} with the batch of {batched[0]} "
                             f"(torch aligns from the right); give it a leading 1 to broadcast over "
                             f"the batch")
        out.append(TensorType(shape=padded[1:], dtype=t.dtype, why=t.why))
    return out, True


class _Elementwise(Op):
    family = "merge"
    arity = (2, None)
    symbol: ClassVar[str] = "+"
    mixes_batch = True  # `x + pos`: torch broadcasts a learned tensor

    def shape(self, ins):
        ins, batched = align_batch(ins)
        # torch aligns from the right: values with a batch must agree in rank, or the batch would
        # meet a feature dimension (tensors without one meet as torch's, any ranks)
        if batched and len({t.rank for t in ins}) > 1:
            raise ShapeError(f"cannot combine values of different ranks: {', '.join(map(str, ins))} "
                             f"(batch excluded); reshape one so the dimensions line up",
                             hint="size-1 dimensions broadcast: [16, 8, 8] + [16, 1, 1] works")
        acc = ins[0]
        for other in ins[1:]:
            acc = acc.with_shape(broadcast(acc, other))
        if len({t.dtype for t in ins}) > 1:
            raise ShapeError(f"cannot combine dtypes {', '.join(t.dtype for t in ins)}")
        return [acc]

    def forward_expr(self, module, ins):
        return f" {self.symbol} ".join(ins)

    def macs(self, ins, outs):
        return outs[0].numel * (len(ins) - 1)


@register
class Add(_Elementwise):
    op: Literal["Add"] = "Add"
    prefix = "add"
    symbol: ClassVar[str] = "+"


@register
class Mul(_Elementwise):
    op: Literal["Mul"] = "Mul"
    prefix = "mul"
    symbol = "*"


@register
class Concat(Op):
    """`Concat(dim=1)`: joins its inputs along a dimension, as `torch.cat(..., dim)` (the batch
    is dim 0, so `dim=1` joins the channels of [B, C, H, W])."""

    op: Literal["Concat"] = "Concat"
    dim: Int  # torch.cat's default, 0, is the batch: here it must be said

    family = "merge"
    prefix = "cat"
    arity = (2, None)
    key_args = ("dim",)

    def shape(self, ins):
        first = ins[0]
        d = dim_index(self.dim, first)
        total = 0
        for t in ins:
            if t.rank != first.rank or t.shape[:d] + t.shape[d + 1:] != first.shape[:d] + first.shape[d + 1:]:
                raise ShapeError(f"cannot concatenate {first} and {t} along dim {self.dim}: the other "
                                 f"dimensions differ", arg="dim")
            if t.dtype != first.dtype:  # torch would promote; say so rather than guess
                raise ShapeError(f"cannot concatenate {first} and {t}: the dtypes differ")
            total += t.shape[d]
        return [first.with_shape(first.shape[:d] + (total,) + first.shape[d + 1:])]

    def forward_expr(self, module, ins):
        return f"torch.cat([{', '.join(ins)}], dim={self.dim})"
