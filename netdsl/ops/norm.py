"""Normalisation and dropout: BatchNorm1d/2d/3d, LayerNorm, GroupNorm, InstanceNorm2d, Dropout,
Dropout2d, StochasticDepth."""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Optional, Union

from typing_extensions import Annotated

from .base import Bool, Float, Inferred, Op, PosFloat, PosInt, Prob, Shape, ShapeError, need_float, need_rank
from .linear import Weighted
from .registry import register


class _BatchNormBase(Weighted):
    family = "norm"
    prefix = "bn"
    ranks: ClassVar[tuple[int, ...]] = (2, 3)

    def infer(self, ins):
        x = need_rank(ins, *self.ranks)
        need_float(ins, self.kind)
        c = x.shape[0]
        if self.num_features is not None and self.num_features != c:
            raise ShapeError(f"{self.kind} expects {self.num_features} channels but gets {c} "
                             f"(input {x})", arg="num_features")
        return {"num_features": c}

    def shape(self, ins):
        x = ins[0]
        if self.kind.startswith("Instance") and math.prod(x.shape[1:]) <= 1:  # (for some size)
            raise ShapeError(f"{self.kind} normalises each channel over its spatial positions, and "
                             f"{x} has only one: torch refuses it in training",
                             hint="normalise over the batch (BatchNorm2d) or leave the norm out "
                                  "where the feature map is 1x1")
        return [x]

    def param_count(self):
        return self.num_features * (2 if self.bias else 1) if self.affine else 0

    def macs(self, ins, outs):
        return 2 * ins[0].numel

    def args_label(self):
        return str(self.num_features)


def _batchnorm(name: str, ranks: tuple[int, ...], torch_default_affine: bool = True):
    class BN(_BatchNormBase):
        op: Literal[name] = name  # type: ignore[valid-type]
        num_features: Annotated[Optional[PosInt], Inferred()] = None
        eps: Float if name.startswith("Instance") else PosFloat = 1e-5  # type: ignore[valid-type]
        # (BatchNorm refuses eps <= 0 in training; InstanceNorm takes it)
        momentum: Optional[Float] = 0.1
        affine: Bool = torch_default_affine
        track_running_stats: Bool = torch_default_affine
        bias: Bool = True  # keyword-only in torch (2.5+): the affine shift, when affine
        keyword_only = ("bias",)

    BN.ranks = ranks
    BN.torch = f"nn.{name}"
    return register(BN)


BatchNorm1d = _batchnorm("BatchNorm1d", (1, 2))
BatchNorm2d = _batchnorm("BatchNorm2d", (3,))
BatchNorm3d = _batchnorm("BatchNorm3d", (4,))
InstanceNorm2d = _batchnorm("InstanceNorm2d", (3,), torch_default_affine=False)
InstanceNorm2d.prefix = "inorm"


@register
class LayerNorm(Weighted):
    op: Literal["LayerNorm"] = "LayerNorm"
    normalized_shape: Annotated[Optional[Union[PosInt, Shape]], Inferred()] = None
    eps: Float = 1e-5
    elementwise_affine: Bool = True
    bias: Bool = True

    family = "norm"
    prefix = "ln"
    torch = "nn.LayerNorm"

    def infer(self, ins):
        x = ins[0]
        need_float(ins, "LayerNorm")
        want = self.normalized_shape
        if want is None:
            if x.rank == 0:
                raise ShapeError("LayerNorm needs an input with at least one dimension")
            return {"normalized_shape": x.shape[-1]}
        shape = (want,) if isinstance(want, int) else tuple(want)
        if x.shape[len(x.shape) - len(shape):] != shape:
            raise ShapeError(f"LayerNorm normalizes over {list(shape)} but the input is {x}",
                             arg="normalized_shape")
        return {"normalized_shape": want}

    def shape(self, ins):
        return [ins[0]]

    def param_count(self):
        if not self.elementwise_affine:
            return 0
        s = self.normalized_shape
        return (s if isinstance(s, int) else math.prod(s)) * (2 if self.bias else 1)

    def macs(self, ins, outs):
        return 2 * ins[0].numel

    def args_label(self):
        return str(self.normalized_shape)


@register
class GroupNorm(Weighted):
    op: Literal["GroupNorm"] = "GroupNorm"
    num_groups: PosInt
    num_channels: Annotated[Optional[PosInt], Inferred()] = None
    eps: Float = 1e-5
    affine: Bool = True
    bias: Bool = True  # keyword-only in torch (2.5+): the affine shift, when affine

    keyword_only = ("bias",)
    family = "norm"
    prefix = "gn"
    torch = "nn.GroupNorm"

    def infer(self, ins):
        x = ins[0]
        if x.rank < 1:
            raise ShapeError("GroupNorm needs an input with channels")
        need_float(ins, "GroupNorm")
        c = x.shape[0]
        if self.num_channels is not None and self.num_channels != c:
            raise ShapeError(f"GroupNorm expects {self.num_channels} channels but gets {c}", arg="num_channels")
        if c % self.num_groups:
            raise ShapeError(f"{c} channels cannot be split into {self.num_groups} groups", arg="num_groups")
        return {"num_channels": c}

    def shape(self, ins):
        return [ins[0]]

    def param_count(self):
        return self.num_channels * (2 if self.bias else 1) if self.affine else 0

    def macs(self, ins, outs):
        return 2 * ins[0].numel

    def args_label(self):
        return f"{self.num_groups} groups, {self.num_channels}"


class _DropoutBase(Op):
    family = "dropout"
    prefix = "drop"
    ranks: ClassVar[tuple[int, ...]] = ()

    def shape(self, ins):
        if self.ranks:
            need_rank(ins, *self.ranks)
        need_float(ins, self.kind)
        return [ins[0]]

    def args_label(self):
        return f"p={self.p:g}"


def _dropout(name: str, ranks: tuple[int, ...] = ()):
    class D(_DropoutBase):
        op: Literal[name] = name  # type: ignore[valid-type]
        p: Prob = 0.5
        inplace: Bool = False

    D.ranks = ranks
    D.torch = f"nn.{name}"
    return register(D)


Dropout = _dropout("Dropout")
Dropout2d = _dropout("Dropout2d", (3,))


@register
class StochasticDepth(_DropoutBase):
    """torchvision.ops.StochasticDepth: in training, zeroes the whole input of a sample
    (`mode="row"`) or of the batch (`"batch"`) with probability `p` and scales the rest by
    1/(1-p); the identity in eval mode. Used on residual branches (EfficientNet, ConvNeXt)."""

    op: Literal["StochasticDepth"] = "StochasticDepth"
    p: Prob
    mode: Literal["batch", "row"]

    prefix = "stochastic_depth"
    torch = "torchvision.ops.StochasticDepth"
    imports = ("import torchvision",)
    key_args = ("mode",)

    def args_label(self):
        return f"p={self.p:g}, {self.mode}"
