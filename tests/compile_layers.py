"""A custom layer for test_compile_safety.py: its string argument reaches the generated code."""

from __future__ import annotations

from torch import nn


class Tagged(nn.Module):
    """Multiplies by `scale`; keeps `tag`, any string."""

    def __init__(self, tag: str = "", scale: float = 1.0):
        super().__init__()
        self.tag = tag
        self.scale = scale

    def forward(self, x):
        return x * self.scale
