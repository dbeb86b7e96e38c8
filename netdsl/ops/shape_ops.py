"""Ops that move data without learning: Flatten, Unflatten, Reshape, Select, Mean, Upsample."""

from __future__ import annotations

import math
from typing import Literal, Optional, Union

from .base import (Bool, Float, Int, Op, PosFloat, PosInt, Shape, ShapeError, dim_index, need_float,
                   need_rank, tup)
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
        why = "*".join(map(str, merged)) if len(merged) > 1 else None
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
            if x.numel % known:
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
        if not -x.shape[d] <= self.index < x.shape[d]:
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
        if 0 in out:
            raise ShapeError(f"Upsample by {self.scale_factor} of {list(x.shape[1:])} is empty", arg=arg)
        return [x.with_shape((x.shape[0], *out))]
