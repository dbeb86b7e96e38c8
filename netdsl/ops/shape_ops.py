"""Ops that move data without learning: Flatten, Unflatten, Reshape, Select, Mean, Upsample,
Permute, Transpose, Chunk, Split."""

from __future__ import annotations

import math
from typing import Literal, Optional, Union

from pydantic import Field, StrictInt, field_validator
from typing_extensions import Annotated

from .base import (
    DIMS_HINT,
    Bool,
    Int,
    Op,
    PosFloat,
    PosInt,
    Shape,
    ShapeError,
    dim_index,
    need_float,
    need_rank,
    tup,
)
from .registry import register


@register
class Flatten(Op):
    """Flattens dimensions `start_dim..end_dim` (as torch counts them: the batch is 0)."""

    op: Literal["Flatten"] = "Flatten"
    start_dim: Int = 1
    end_dim: Int = -1

    family = "shape"
    prefix = "flatten"
    torch = "nn.Flatten"

    def shape(self, ins):
        x = ins[0]
        a, b = dim_index(self.start_dim, x, "start_dim"), dim_index(self.end_dim, x, "end_dim")
        if a > b:
            raise ShapeError(f"start_dim ({self.start_dim}) comes after end_dim ({self.end_dim})")
        merged = x.shape[a:b + 1]
        why = "*".join(f"({d})" if " " in str(d) or "/" in str(d) else str(d) for d in merged) \
            if len(merged) > 1 else None
        return [x.with_shape(x.shape[:a] + (math.prod(merged),) + x.shape[b + 1:], why=why)]


@register
class Unflatten(Op):
    op: Literal["Unflatten"] = "Unflatten"
    dim: Int
    unflattened_size: Shape

    family = "shape"
    prefix = "unflatten"
    torch = "nn.Unflatten"

    def shape(self, ins):
        x = ins[0]
        d = dim_index(self.dim, x)
        if math.prod(self.unflattened_size) != x.shape[d]:
            raise ShapeError(f"cannot unflatten size {x.shape[d]} into {list(self.unflattened_size)}",
                             arg="unflattened_size")
        return [x.with_shape(x.shape[:d] + tuple(self.unflattened_size) + x.shape[d + 1:])]


@register
class Reshape(Op):
    """`Reshape(4, 7, 7)` or `Reshape(-1)`: the shape after the batch dimension."""

    op: Literal["Reshape"] = "Reshape"
    shape_: tuple[Int, ...]

    family = "shape"
    prefix = "reshape"
    varargs = "shape_"

    def shape(self, ins):
        x = ins[0]
        want = list(self.shape_)
        if want.count(-1) > 1 or any(d == 0 or d < -1 for d in want):
            raise ShapeError(f"invalid shape {want}: sizes must be positive, with at most one -1")
        known = math.prod(d for d in want if d != -1)
        if -1 in want:
            if x.numel % known != 0:
                raise ShapeError(f"cannot reshape {x} ({x.numel} values) to {want}")
            want[want.index(-1)] = x.numel // known
        if math.prod(want) != x.numel:
            raise ShapeError(f"cannot reshape {x} ({x.numel} values) to {want} ({math.prod(want)} values)")
        return [x.with_shape(want)]

    def forward_expr(self, module, ins):
        dims = ", ".join(map(str, self.shape_))
        return f"{ins[0]}.reshape({ins[0]}.shape[0], {dims})"

    def args_label(self):
        return "→" + "×".join(map(str, self.shape_))


@register
class Select(Op):
    """`Select(dim, index)`: one slice along a dimension (the last time step of [B, T, F]:
    Select(1, -1)), as `x.select(dim, index)`."""

    op: Literal["Select"] = "Select"
    dim: Int
    index: Int

    family = "shape"
    prefix = "select"
    key_args = ("dim", "index")

    def shape(self, ins):
        x = ins[0]
        d = dim_index(self.dim, x)
        if self.index >= x.shape[d] or self.index < -x.shape[d]:  # (for any admissible size)
            raise ShapeError(f"index {self.index} is out of range for size {x.shape[d]}", arg="index")
        return [x.with_shape(x.shape[:d] + x.shape[d + 1:])]

    def forward_expr(self, module, ins):
        return f"{ins[0]}.select({self.dim}, {self.index})"


@register
class Mean(Op):
    """`Mean(dim)`: average over one dimension, as `x.mean(dim)`."""

    op: Literal["Mean"] = "Mean"
    dim: Int
    keepdim: Bool = False

    family = "pooling"
    prefix = "mean"
    key_args = ("dim",)

    def shape(self, ins):
        x = ins[0]
        need_float(ins, "Mean")
        d = dim_index(self.dim, x)
        shape = list(x.shape)
        if self.keepdim:
            shape[d] = 1
        else:
            shape.pop(d)
        return [x.with_shape(shape)]

    def forward_expr(self, module, ins):
        keep = ", keepdim=True" if self.keepdim else ""
        return f"{ins[0]}.mean({self.dim}{keep})"

    def macs(self, ins, outs):
        return ins[0].numel


@register
class Upsample(Op):
    op: Literal["Upsample"] = "Upsample"
    size: Optional[Union[PosInt, tuple[PosInt, ...]]] = None
    scale_factor: Optional[Union[PosFloat, tuple[PosFloat, ...]]] = None
    mode: Literal["nearest", "linear", "bilinear", "bicubic", "trilinear", "nearest-exact"] = "nearest"
    align_corners: Optional[Bool] = None
    recompute_scale_factor: Optional[Bool] = None

    family = "pooling"
    prefix = "up"
    torch = "nn.Upsample"
    key_args = ("scale_factor", "size", "mode")

    def shape(self, ins):
        x = need_rank(ins, 2, 3, 4, what=" (channels and 1 to 3 spatial)")
        need_float(ins, "Upsample")
        n = x.rank - 1
        if (self.size is None) == (self.scale_factor is None):
            raise ShapeError("Upsample needs exactly one of size= or scale_factor=")
        if self.size is not None and self.recompute_scale_factor is not None:
            raise ShapeError("recompute_scale_factor only applies with scale_factor=, not size=",
                             arg="recompute_scale_factor")
        want = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}.get(self.mode)
        if want is not None and want != n:
            raise ShapeError(f"mode {self.mode!r} works on {want} spatial dimensions, the input has {n}",
                             arg="mode")
        if want is None and self.align_corners is not None:
            raise ShapeError(f"align_corners only applies to the interpolating modes (linear, bilinear, "
                             f"bicubic, trilinear), not {self.mode!r}", arg="align_corners")
        arg = "size" if self.size is not None else "scale_factor"
        given = tup(getattr(self, arg), n)
        if len(given) != n:
            raise ShapeError(f"expected {n} values of {arg} for {n} spatial dimensions", arg=arg)
        out = given if self.size is not None else tuple(math.floor(s * f) for s, f in zip(x.shape[1:], given))
        if any(o <= 0 for o in out):  # (for some admissible size, where sizes are symbolic)
            raise ShapeError(f"Upsample by {self.scale_factor} of {list(x.shape[1:])} is empty", arg=arg)
        return [x.with_shape((x.shape[0], *out))]


@register
class Permute(Op):
    """`Permute(0, 2, 1)`: reorders dimensions as `x.permute(0, 2, 1)`; the batch stays first."""

    op: Literal["Permute"] = "Permute"
    dims: tuple[Int, ...]

    family = "shape"
    prefix = "permute"
    varargs = "dims"

    def shape(self, ins):
        x = ins[0]
        rank = x.rank + 1
        full = [d % rank if -rank <= d < rank else None for d in self.dims]
        if len(self.dims) != rank or None in full or sorted(full) != list(range(rank)):
            raise ShapeError(f"Permute{tuple(self.dims)} is not an order of the {rank} dimensions of "
                             f"[B, {', '.join(map(str, x.shape))}]: it lists each of 0..{rank - 1} once",
                             hint=DIMS_HINT)
        if full[0] != 0:
            raise ShapeError(f"Permute{tuple(self.dims)} moves the batch dimension: layers work within a "
                             f"sample, so dims start with 0", hint=DIMS_HINT)
        return [x.with_shape([x.shape[d - 1] for d in full[1:]])]

    def forward_expr(self, module, ins):
        return f"{ins[0]}.permute({', '.join(map(str, self.dims))})"

    def args_label(self):
        return ", ".join(map(str, self.dims))


@register
class Transpose(Op):
    """`Transpose(1, 2)`: swaps two dimensions as `x.transpose(1, 2)` (not the batch)."""

    op: Literal["Transpose"] = "Transpose"
    dim0: Int
    dim1: Int

    family = "shape"
    prefix = "transpose"
    key_args = ("dim0", "dim1")

    def shape(self, ins):
        x = ins[0]
        a, b = dim_index(self.dim0, x, "dim0"), dim_index(self.dim1, x, "dim1")
        shape = list(x.shape)
        shape[a], shape[b] = shape[b], shape[a]
        return [x.with_shape(shape)]

    def forward_expr(self, module, ins):
        return f"{ins[0]}.transpose({self.dim0}, {self.dim1})"

    def args_label(self):
        return f"{self.dim0}, {self.dim1}"


class _Pieces(Op):
    """Ops that cut a value into several along `dim`; each piece is an output."""

    family = "shape"

    def pieces(self, size: int) -> list[int]:
        raise NotImplementedError

    def shape(self, ins):
        x = ins[0]
        d = dim_index(self.dim, x)
        return [x.with_shape(x.shape[:d] + (n,) + x.shape[d + 1:]) for n in self.pieces(x.shape[d])]

    def forward_lines(self, module, ins, outs):
        lhs = ", ".join(o or "_" for o in outs) + ("," if len(outs) == 1 else "")
        return [f"{lhs} = {self.forward_expr(module, ins)}"]


MAX_PIECES = 4096  # Chunk's outputs are named one by one: 2**62 of them would never be


@register
class Chunk(_Pieces):
    """`q, k, v = x -> Chunk(3, dim=-1)`: `x.chunk(3, dim)`, each chunk an output."""

    op: Literal["Chunk"] = "Chunk"
    chunks: Annotated[StrictInt, Field(gt=0, le=MAX_PIECES)]  # each piece is an output
    dim: Int  # torch's default, 0, is the batch: here it must be said

    prefix = "chunk"
    key_args = ("chunks", "dim")

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(f"chunk{i + 1}" for i in range(self.chunks))

    def pieces(self, size):
        each = -(-size // self.chunks)
        last = size - each * (self.chunks - 1)
        if last <= 0:  # torch.chunk quietly returns fewer
            made = f"{-(-size // each)} chunks" if isinstance(size, int) else "fewer chunks"
            raise ShapeError(f"x.chunk({self.chunks}) of size {size} gives {made} in torch, not "
                             f"{self.chunks}", arg="chunks",
                             hint="give the sizes: Split((a, b, ...), dim) makes exactly those")
        return [each] * (self.chunks - 1) + [last]

    def forward_expr(self, module, ins):
        return f"{ins[0]}.chunk({self.chunks}, {self.dim})"


@register
class Split(_Pieces):
    """`a, b = x -> Split((16, 48), dim=1)`: `x.split([16, 48], dim)`, the sizes adding up to
    the dimension's size."""

    op: Literal["Split"] = "Split"
    split_size_or_sections: PosInt | tuple[PosInt, ...]
    dim: Int  # torch's default, 0, is the batch: here it must be said

    prefix = "split"
    key_args = ("split_size_or_sections", "dim")

    @field_validator("split_size_or_sections", mode="before")
    @classmethod
    def _sections(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError(  # noqa: TRY004 - pydantic reports a validator's ValueError"one size makes as many pieces as the dimension allows, which the spec "
                             "must know to name them: give each size, Split((16, 16), dim=1), or use "
                             "Chunk(n, dim)")
        return v

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(f"part{i + 1}" for i in range(len(self.split_size_or_sections)))

    def pieces(self, size):
        sizes = list(self.split_size_or_sections)
        if sum(sizes) != size:
            raise ShapeError(f"the sizes {sizes} add up to {sum(sizes)}, but the dimension has {size}",
                             arg="split_size_or_sections")
        return sizes

    def forward_expr(self, module, ins):
        return f"{ins[0]}.split({list(self.split_size_or_sections)}, {self.dim})"
