"""Convolutions: Conv1d/2d/3d and ConvTranspose1d/2d/3d, from one rule per family."""

from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union

from typing_extensions import Annotated

from .base import (Bool, Inferred, NonNegInt, PosInt, ShapeError, need_float, need_int32, need_rank,
                   numel, tup)
from .linear import Weighted
from .registry import register

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]


class _ConvBase(Weighted):
    dims: ClassVar[int] = 2
    transposed: ClassVar[bool] = False
    family = "conv"
    key_args = ("kernel_size", "stride", "padding")

    def infer(self, ins):
        x = need_rank(ins, self.dims + 1, what=f" (channels and {self.dims} spatial)")
        need_float(ins, self.kind)
        c = x.shape[0]
        if self.in_channels is not None and self.in_channels != c:
            raise ShapeError(f"{self.kind} expects {self.in_channels} input channels but gets {c} "
                             f"(input {x})", arg="in_channels")
        if c % self.groups or self.out_channels % self.groups:
            raise ShapeError(f"in_channels ({c}) and out_channels ({self.out_channels}) must both be "
                             f"divisible by groups ({self.groups})", arg="groups")
        return {"in_channels": c}

    def _pads(self, size: int, k: int, d: int, i: int) -> tuple[int, int]:
        """Padding before and after spatial dim `i`, checked against the input like torch does."""
        if self.padding == "valid":
            return 0, 0
        if self.padding == "same":  # torch puts the odd pixel after
            total = d * (k - 1)
            lo, hi = total // 2, total - total // 2
        else:
            lo = hi = tup(self.padding, self.dims)[i]
        limit = {"reflect": size - 1, "circular": size}.get(self.padding_mode)
        if limit is not None and max(lo, hi) > limit:
            raise ShapeError(f"padding {max(lo, hi)} with padding_mode={self.padding_mode!r} must be at most "
                             f"{limit} for an input of size {size}", arg="padding")
        return lo, hi

    def shape(self, ins):
        x = ins[0]
        n = self.dims
        k, s, d = tup(self.kernel_size, n), tup(self.stride, n), tup(self.dilation, n)
        pads = tup(self.padding, n) if not isinstance(self.padding, str) else (0,)
        need_int32(kernel_size=k, stride=s, dilation=d, padding=pads)
        if self.padding == "same" and s != (1,) * n:
            raise ShapeError("padding='same' needs stride 1: torch does not support it for strided "
                             "convolutions", arg="padding")
        out = []
        for i, size in enumerate(x.shape[1:]):
            if self.transposed:
                p, op_ = tup(self.padding, n)[i], tup(self.output_padding, n)[i]
                if op_ >= s[i] and op_ >= d[i]:
                    raise ShapeError(f"output_padding ({op_}) must be smaller than either stride ({s[i]}) "
                                     f"or dilation ({d[i]})", arg="output_padding")
                o = (size - 1) * s[i] - 2 * p + d[i] * (k[i] - 1) + op_ + 1
            else:
                lo, hi = self._pads(size, k[i], d[i], i)
                o = (size + lo + hi - d[i] * (k[i] - 1) - 1) // s[i] + 1
            if o <= 0:
                raise ShapeError(f"{self.kind} with kernel {k}, stride {s}, padding {self.padding} produces "
                                 f"an empty output from an input of size {x.shape[1:]}", arg="kernel_size")
            out.append(o)
        return [x.with_shape((self.out_channels, *out))]

    def param_count(self):
        k = numel(tup(self.kernel_size, self.dims))
        return self.in_channels * self.out_channels // self.groups * k + (self.out_channels if self.bias else 0)

    def macs(self, ins, outs):
        k = numel(tup(self.kernel_size, self.dims))
        if self.transposed:  # every input value is spread over out_channels/groups * k outputs
            return ins[0].numel * (self.out_channels // self.groups) * k
        return self.in_channels // self.groups * k * outs[0].numel

    def args_label(self):
        extra = super().args_label()
        return f"{self.in_channels}→{self.out_channels}" + (f", {extra}" if extra else "")


def _conv(dims: int):
    Size = Union[PosInt, tuple[(PosInt,) * dims]]  # type: ignore[misc]
    Pad = Union[NonNegInt, tuple[(NonNegInt,) * dims], Literal["same", "valid"]]  # type: ignore[misc]
    name = f"Conv{dims}d"

    class Conv(_ConvBase):
        op: Literal[name] = name  # type: ignore[valid-type]
        in_channels: Annotated[Optional[PosInt], Inferred()] = None
        out_channels: PosInt
        kernel_size: Size
        stride: Size = 1
        padding: Pad = 0
        dilation: Size = 1
        groups: PosInt = 1
        bias: Bool = True
        padding_mode: PaddingMode = "zeros"

    Conv.dims = dims
    Conv.prefix = "conv"
    Conv.torch = f"nn.{name}"
    return register(Conv)


def _deconv(dims: int):
    Size = Union[PosInt, tuple[(PosInt,) * dims]]  # type: ignore[misc]
    Pad = Union[NonNegInt, tuple[(NonNegInt,) * dims]]  # type: ignore[misc]
    name = f"ConvTranspose{dims}d"

    class Deconv(_ConvBase):
        op: Literal[name] = name  # type: ignore[valid-type]
        in_channels: Annotated[Optional[PosInt], Inferred()] = None
        out_channels: PosInt
        kernel_size: Size
        stride: Size = 1
        padding: Pad = 0
        output_padding: Pad = 0
        groups: PosInt = 1
        bias: Bool = True
        dilation: Size = 1
        padding_mode: Literal["zeros"] = "zeros"

    Deconv.dims = dims
    Deconv.transposed = True
    Deconv.prefix = "deconv"
    Deconv.torch = f"nn.{name}"
    return register(Deconv)


Conv1d, Conv2d, Conv3d = _conv(1), _conv(2), _conv(3)
ConvTranspose1d, ConvTranspose2d, ConvTranspose3d = _deconv(1), _deconv(2), _deconv(3)
