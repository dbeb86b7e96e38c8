"""Convolutions: Conv1d/2d/3d and ConvTranspose1d/2d, from one rule per family."""

from __future__ import annotations

from typing import ClassVar, Literal, Optional, Union

from typing_extensions import Annotated

from .base import Bool, Inferred, NonNegInt, PosInt, ShapeError, conv_out, need_rank, numel, tup
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
        c = x.shape[0]
        if self.in_channels is not None and self.in_channels != c:
            raise ShapeError(f"{self.kind} expects {self.in_channels} input channels but gets {c} "
                             f"(input {x})", arg="in_channels")
        if c % self.groups or self.out_channels % self.groups:
            raise ShapeError(f"in_channels ({c}) and out_channels ({self.out_channels}) must both be "
                             f"divisible by groups ({self.groups})", arg="groups")
        return {"in_channels": c}

    def _geometry(self):
        n = self.dims
        pad = self.padding
        return (tup(self.kernel_size, n), tup(self.stride, n), pad, tup(self.dilation, n))

    def shape(self, ins):
        x = ins[0]
        k, s, pad, d = self._geometry()
        spatial = x.shape[1:]
        out = []
        for i, size in enumerate(spatial):
            if self.transposed:
                p, op_ = tup(pad, self.dims)[i], tup(self.output_padding, self.dims)[i]
                o = (size - 1) * s[i] - 2 * p + d[i] * (k[i] - 1) + op_ + 1
            elif pad == "same":
                o = size
            elif pad == "valid":
                o = conv_out(size, k[i], s[i], 0, d[i])
            else:
                o = conv_out(size, k[i], s[i], tup(pad, self.dims)[i], d[i])
            if o <= 0:
                raise ShapeError(f"{self.kind} with kernel {k}, stride {s}, padding {pad} produces an "
                                 f"empty output from an input of size {x.shape[1:]}", arg="kernel_size")
            out.append(o)
        return [x.with_shape((self.out_channels, *out))]

    def param_count(self):
        k = numel(tup(self.kernel_size, self.dims))
        return self.in_channels * self.out_channels // self.groups * k + (self.out_channels if self.bias else 0)

    def macs(self, ins, outs):
        k = numel(tup(self.kernel_size, self.dims))
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
    Conv.__name__ = Conv.__qualname__ = name
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
    Deconv.__name__ = Deconv.__qualname__ = name
    return register(Deconv)


Conv1d, Conv2d, Conv3d = _conv(1), _conv(2), _conv(3)
ConvTranspose1d, ConvTranspose2d = _deconv(1), _deconv(2)
