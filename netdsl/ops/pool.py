"""Pooling: MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d/3d, AdaptiveMaxPool1d/2d."""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Optional, Union

from .base import (Bool, NonNegInt, Op, PosInt, ShapeError, need_float, need_int32, need_rank, numel,
                   tup)
from .registry import register


class _PoolBase(Op):
    dims: ClassVar[int] = 2
    family = "pooling"
    prefix = "pool"
    key_args = ("kernel_size", "stride", "padding")

    def shape(self, ins):
        x = need_rank(ins, self.dims + 1, self.dims, what=f" ([channels,] {self.dims} spatial)")
        k = tup(self.kernel_size, self.dims)
        s = tup(self.stride if self.stride is not None else self.kernel_size, self.dims)
        p = tup(self.padding, self.dims)
        d = tup(getattr(self, "dilation", 1), self.dims)
        need_int32(kernel_size=k, stride=s, padding=p, dilation=d)
        lead, spatial = x.shape[: x.rank - self.dims], x.shape[x.rank - self.dims:]
        out = []
        for i, size in enumerate(spatial):
            if p[i] * 2 > k[i]:
                raise ShapeError(f"padding {p[i]} must be at most half the kernel size {k[i]}", arg="padding")
            span = size + 2 * p[i] - d[i] * (k[i] - 1) - 1
            o = (math.ceil(span / s[i]) if self.ceil_mode else span // s[i]) + 1
            if self.ceil_mode:  # torch drops a last window that would start in the right padding:
                # it keeps min(o, m) windows, m those starting in the input or its left padding
                m = (size + p[i] - 1) // s[i] + 1
                if not o < m:  # o >= m for every size
                    o = m
                elif o > m:  # symbolic: o < m for some sizes and o > m for others
                    raise ShapeError(f"with ceil_mode=true, whether the last window of {size} is kept "
                                     f"depends on the size's remainder by the stride {s[i]}", arg="ceil_mode")
            if o <= 0:
                raise ShapeError(f"{self.kind}({k}) is larger than its input {tuple(spatial)}",
                                 arg="kernel_size")
            out.append(o)
        return [x.with_shape((*lead, *out))]

    def macs(self, ins, outs):
        return outs[0].numel * numel(tup(self.kernel_size, self.dims))


def _pool(kind: str, dims: int):
    Size = Union[PosInt, tuple[(PosInt,) * dims]]  # type: ignore[misc]
    Pad = Union[NonNegInt, tuple[(NonNegInt,) * dims]]  # type: ignore[misc]
    name = f"{kind}Pool{dims}d"
    if kind == "Max":
        class Pool(_PoolBase):
            op: Literal[name] = name  # type: ignore[valid-type]
            kernel_size: Size
            stride: Optional[Size] = None
            padding: Pad = 0
            dilation: Size = 1
            return_indices: Literal[False] = False  # one output per call
            ceil_mode: Bool = False
    else:
        class Pool(_PoolBase):
            op: Literal[name] = name  # type: ignore[valid-type]
            kernel_size: Size
            stride: Optional[Size] = None
            padding: Pad = 0
            ceil_mode: Bool = False
            count_include_pad: Bool = True
        if dims >= 2:  # AvgPool1d has no divisor_override
            class Pool(Pool):  # type: ignore[no-redef]
                divisor_override: Optional[PosInt] = None
        if dims == 3:
            Pool.shape = _avg_pool3d_shape
    Pool.dims = dims
    Pool.torch = f"nn.{name}"
    return register(Pool)


def _avg_pool3d_shape(self, ins, _plain=_PoolBase.shape):
    """AvgPool3d's own limits in torch: no float16 or bfloat16 kernel on the CPU
    ("avg_pool3d_out_frame" not implemented for 'Half'), and every spatial size at least the
    kernel's before padding ("input image smaller than kernel size"), even where padding or
    ceil_mode would make an output."""
    x = ins[0]
    if x.dtype in ("float16", "bfloat16"):
        raise ShapeError(f"{self.kind} takes float32 or float64 input: torch has no {x.dtype} "
                         f"kernel for it on the CPU, and it gets {x}", code="E303",
                         hint="declare the input float32 (the default)")
    outs = _plain(self, ins)
    k, spatial = tup(self.kernel_size, 3), x.shape[x.rank - 3:]
    if any(size < ki for size, ki in zip(spatial, k)):
        raise ShapeError(f"{self.kind}({k}) is larger than its input {tuple(spatial)}: torch pools "
                         "3-d averages only over inputs at least the kernel's size, padding aside",
                         arg="kernel_size")
    return outs


class _AdaptiveBase(Op):
    dims: ClassVar[int] = 2
    family = "pooling"
    prefix = "pool"
    key_args = ("output_size",)

    def shape(self, ins):
        x = need_rank(ins, self.dims + 1, self.dims, what=f" ([channels,] {self.dims} spatial)")
        need_float(ins, self.kind)
        size = tup(self.output_size, self.dims)
        lead = x.shape[: x.rank - self.dims]
        out = tuple(o if o is not None else x.shape[x.rank - self.dims + i] for i, o in enumerate(size))
        return [x.with_shape((*lead, *out))]

    def macs(self, ins, outs):
        return ins[0].numel


def _adaptive(kind: str, dims: int):
    # none keeps that dimension's size; torch takes it from 2 dimensions on
    each = Optional[PosInt] if dims > 1 else PosInt
    Size = Union[PosInt, tuple[(each,) * dims]]  # type: ignore[misc]
    name = f"Adaptive{kind}Pool{dims}d"

    class Pool(_AdaptiveBase):
        op: Literal[name] = name  # type: ignore[valid-type]
        output_size: Size
    if kind == "Max":
        class Pool(Pool):  # type: ignore[no-redef]
            return_indices: Literal[False] = False  # one output per call

    Pool.dims = dims
    Pool.torch = f"nn.{name}"
    return register(Pool)


MaxPool1d, MaxPool2d, MaxPool3d = _pool("Max", 1), _pool("Max", 2), _pool("Max", 3)
AvgPool1d, AvgPool2d, AvgPool3d = _pool("Avg", 1), _pool("Avg", 2), _pool("Avg", 3)
AdaptiveAvgPool1d, AdaptiveAvgPool2d = _adaptive("Avg", 1), _adaptive("Avg", 2)
AdaptiveAvgPool3d = _adaptive("Avg", 3)
AdaptiveMaxPool1d, AdaptiveMaxPool2d = _adaptive("Max", 1), _adaptive("Max", 2)
