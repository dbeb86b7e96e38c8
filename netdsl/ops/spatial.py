"""Spatial rearrangements that keep every value: PixelShuffle/PixelUnshuffle (channels to and
from space) and ZeroPad2d/ConstantPad2d. They work on the last three (two) dimensions, on any
dtype, and compute nothing."""

from __future__ import annotations

from typing import ClassVar, Literal, Union

from .activation import need_representable
from .base import Float, Int, Op, PosInt, ShapeError
from .registry import register


class _Shuffle(Op):
    family = "shape"
    down: ClassVar[bool] = False  # PixelUnshuffle: space to channels

    def shape(self, ins):
        x = ins[0]
        r = self.factor
        arg = "downscale_factor" if self.down else "upscale_factor"
        if x.rank < 3:
            raise ShapeError(f"{self.kind} expects an input of [channels, height, width] (without "
                             f"batch), but gets {x.rank} dimensions: {x}")
        *lead, c, h, w = x.shape
        if self.down:
            if h % r != 0 or w % r != 0:
                raise ShapeError(f"{self.kind}({r}) needs a height and width divisible by {r}, but "
                                 f"gets {_sized(h)}x{_sized(w)} (input {x})", arg=arg)
            return [x.with_shape((*lead, c * r * r, h // r, w // r))]
        if c % (r * r):
            raise ShapeError(f"{self.kind}({r}) needs channels divisible by {r}**2 = {r * r}, but "
                             f"gets {c} (input {x})", arg=arg,
                             hint=f"a convolution before it can make {r * r * max(1, c // (r * r))} "
                                  "channels")
        return [x.with_shape((*lead, c // (r * r), h * r, w * r))]


@register
class PixelShuffle(_Shuffle):
    """[C*r*r, H, W] -> [C, H*r, W*r] (sub-pixel convolution's last step)."""

    op: Literal["PixelShuffle"] = "PixelShuffle"
    upscale_factor: PosInt

    prefix = "shuffle"
    torch = "nn.PixelShuffle"
    key_args = ("upscale_factor",)

    @property
    def factor(self) -> int:
        return self.upscale_factor


@register
class PixelUnshuffle(_Shuffle):
    """[C, H*r, W*r] -> [C*r*r, H, W], the inverse of PixelShuffle."""

    op: Literal["PixelUnshuffle"] = "PixelUnshuffle"
    downscale_factor: PosInt

    prefix = "unshuffle"
    torch = "nn.PixelUnshuffle"
    key_args = ("downscale_factor",)
    down = True

    @property
    def factor(self) -> int:
        return self.downscale_factor


# all four sides, or (left, right, top, bottom); typing.Union, which describe_type reads
Padding2d = Union[Int, tuple[Int, Int, Int, Int]]  # noqa: UP007


class _Pad2d(Op):
    family = "shape"
    prefix = "pad"
    key_args = ("padding",)

    def shape(self, ins):
        x = ins[0]
        if x.rank < 2:
            raise ShapeError(f"{self.kind} pads the last two dimensions (height, width), and its input "
                             f"{x} has {x.rank} without the batch")
        left, right, top, bottom = self.padding if isinstance(self.padding, tuple) else (self.padding,) * 4
        *lead, h, w = x.shape
        out = []
        for size, lo, hi, what in ((h, top, bottom, "height"), (w, left, right, "width")):
            # negative padding crops; torch refuses to crop more than there is, and netdsl an
            # empty result (torch would make an empty tensor)
            if size + min(lo, 0) + min(hi, 0) < 0 or size + lo + hi <= 0:
                raise ShapeError(f"{self.kind}({self.padding}) leaves no {what}: {size} padded by "
                                 f"{lo} and {hi}", arg="padding",
                                 hint="negative padding crops; the padding is (left, right, top, bottom)")
            out.append(size + lo + hi)
        value = getattr(self, "value", 0)
        if value:
            need_representable(value, x.dtype, "value", self.kind)
        return [x.with_shape((*lead, *out))]


@register
class ZeroPad2d(_Pad2d):
    op: Literal["ZeroPad2d"] = "ZeroPad2d"
    padding: Padding2d

    torch = "nn.ZeroPad2d"


@register
class ConstantPad2d(_Pad2d):
    op: Literal["ConstantPad2d"] = "ConstantPad2d"
    padding: Padding2d
    value: Float

    torch = "nn.ConstantPad2d"
    key_args = ("padding", "value")


def _sized(d) -> str:
    """A size in a message, bracketed where it is a formula: `(H + 7)x(W + 3)`."""
    return f"({d})" if " " in str(d) else str(d)
