"""nn.Module classes used as custom layers by the tests (allowed explicitly, never by a spec)."""

from __future__ import annotations

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
