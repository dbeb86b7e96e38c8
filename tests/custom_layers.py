"""nn.Module classes used as custom layers by the tests (allowed explicitly, never by a spec)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Scale(nn.Module):
    """No parameters, shape kept: traced on the meta device."""

    def __init__(self, factor: float = 2.0):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class Bottleneck(nn.Module):
    """A residual bottleneck; in_channels is inferred from the input like Conv2d's."""

    netdsl_infer = {"in_channels": lambda shapes: shapes[0][0]}

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        mid = max(1, out_channels // 4)
        self.reduce = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.conv = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.expand = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x):
        y = self.expand(torch.relu(self.conv(torch.relu(self.reduce(x)))))
        return torch.relu(y + self.skip(x))


class Halves(nn.Module):
    """Two outputs: the two halves of the channels."""

    netdsl_outputs = ("first", "second")

    def forward(self, x):
        return x.chunk(2, dim=1)


class DataDependent(nn.Module):
    """Cannot run on the meta device (.item()), so it declares its shape rule."""

    @staticmethod
    def netdsl_shape(shapes, width):
        ((c, n),) = shapes
        if n < 2:
            raise ValueError("needs at least 2 steps")
        return (c, width)

    def __init__(self, width: int):
        super().__init__()
        self.proj = nn.LazyLinear(width) if False else None
        self.width = width

    def forward(self, x):
        k = int(x.abs().sum().item()) % 2 + 1
        return x[..., :1].expand(*x.shape[:-1], self.width) * k


def not_a_module():
    return 1


class Wrapped(nn.Module):
    """A convolution and a ReLU; every other keyword goes to nn.Conv2d through **conv."""

    netdsl_infer: ClassVar[dict] = {"in_channels": lambda shapes: shapes[0][0]}

    def __init__(self, in_channels: int, out_channels: int, **conv):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, **conv)

    def forward(self, x):
        return torch.relu(self.conv(x))


class Options(nn.Module):
    """Multiplies by `scale` and keeps whatever other keyword arguments it is given."""

    def __init__(self, scale: float = 1.0, **options):
        super().__init__()
        self.scale = scale
        self.options = options

    def forward(self, x):
        return x * self.scale


class Cropped(nn.Module):
    """Keeps the first `keep` steps, a keyword read from **kw. Its forward cannot run on the meta
    device (.item()), so its shape function says what it returns, from the same keywords."""

    @staticmethod
    def netdsl_shape(shapes, **kw):
        ((c, n),) = shapes
        if not 0 < kw["keep"] <= n:
            raise ValueError(f"keep={kw['keep']} is not in 1..{n}")
        return (c, kw["keep"])

    def __init__(self, **kw):
        super().__init__()
        self.keep = kw["keep"]

    def forward(self, x):
        k = self.keep + int(x.sum().item()) * 0
        return x[..., :k]


class Patches(nn.Module):
    """The README's and register_layer's worked example: [C, H, W] -> [H/p * W/p, dim]."""

    def __init__(self, in_channels: int, dim: int, patch: int = 4):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


def patches_shape(shapes, in_channels, dim, patch):
    ((_, h, w),) = shapes
    if h % patch or w % patch:
        raise ValueError(f"{h}x{w} is not a whole number of {patch}x{patch} patches")
    return (h // patch * (w // patch), dim)
