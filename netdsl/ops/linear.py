"""Dense layers: Linear, Bilinear, Embedding, Identity."""

from __future__ import annotations

import math
from typing import Literal, Optional

from typing_extensions import Annotated

from ..ir.types import TensorType
from .base import Bool, Extra, Float, Inferred, InitName, Int, Op, PosInt, ShapeError, need_float
from .registry import register


class Weighted(Op):
    """An op with learnable weights: adds `init=`, `bias_init=` and `trainable=`."""

    init: Annotated[InitName, Extra()] = None
    bias_init: Annotated[InitName, Extra()] = None
    trainable: Annotated[Bool, Extra()] = True


class Tied(Weighted):
    """A layer whose weight may be another layer's: `Linear(50257, bias=false,
    weight=wte.weight)` ties GPT-2's head to its token embedding, as
    `self.lm_head.weight = self.wte.weight` does in PyTorch. One tensor: counted once, learned
    once; the state_dict holds it under both names, as torch's does."""

    weight: Annotated[Optional[str], Extra()] = None  # "wte.weight": the layer that owns it

    def weight_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def own_weight(self) -> int:
        """Weight values this layer holds itself (0 when tied)."""
        return 0 if self.weight else math.prod(self.weight_shape())


def _features(x: TensorType, given: int | None, field: str, layer: str) -> int:
    if x.rank == 0:
        raise ShapeError(f"{layer} needs an input with at least one dimension")
    need_float([x], layer)
    got = x.shape[-1]
    if given is not None and given != got:
        why = f" = {x.why}" if x.why else ""
        raise ShapeError(f"{layer} expects {given} features but gets {got}{why}", arg=field)
    return got


@register
class Linear(Tied):
    op: Literal["Linear"] = "Linear"
    in_features: Annotated[Optional[PosInt], Inferred()] = None
    out_features: PosInt
    bias: Bool = True

    family = "linear"
    prefix = "fc"
    torch = "nn.Linear"
    key_args = ()

    def infer(self, ins):
        return {"in_features": _features(ins[0], self.in_features, "in_features", "Linear")}

    def shape(self, ins):
        return [ins[0].with_shape(ins[0].shape[:-1] + (self.out_features,))]

    def weight_shape(self):
        return (self.out_features, self.in_features)

    def param_count(self):
        return self.own_weight() + (self.out_features if self.bias else 0)

    def macs(self, ins, outs):
        return self.in_features * outs[0].numel

    def args_label(self):
        return f"{self.in_features}→{self.out_features}"


@register
class Bilinear(Weighted):
    op: Literal["Bilinear"] = "Bilinear"
    in1_features: Annotated[Optional[PosInt], Inferred()] = None
    in2_features: Annotated[Optional[PosInt], Inferred()] = None
    out_features: PosInt
    bias: Bool = True

    family = "linear"
    prefix = "bilinear"
    torch = "nn.Bilinear"
    arity = (2, 2)

    def infer(self, ins):
        a, b = ins
        if a.shape[:-1] != b.shape[:-1]:
            raise ShapeError(f"Bilinear inputs must agree in all but the last dimension, got {a} and {b}")
        return {"in1_features": _features(a, self.in1_features, "in1_features", "Bilinear"),
                "in2_features": _features(b, self.in2_features, "in2_features", "Bilinear")}

    def shape(self, ins):
        return [ins[0].with_shape(ins[0].shape[:-1] + (self.out_features,))]

    def param_count(self):
        return self.in1_features * self.in2_features * self.out_features + (self.out_features if self.bias else 0)

    def macs(self, ins, outs):
        return self.in1_features * self.in2_features * outs[0].numel

    def args_label(self):
        return f"({self.in1_features}, {self.in2_features})→{self.out_features}"


@register
class Embedding(Tied):
    op: Literal["Embedding"] = "Embedding"
    num_embeddings: PosInt
    embedding_dim: PosInt
    padding_idx: Optional[Int] = None
    max_norm: Optional[Float] = None
    norm_type: Float = 2.0
    scale_grad_by_freq: Bool = False
    sparse: Bool = False

    family = "embedding"
    prefix = "embed"
    torch = "nn.Embedding"

    def shape(self, ins):
        x = ins[0]
        if x.dtype not in ("int64", "int32"):  # torch refuses uint8 indices
            raise ShapeError(f"Embedding needs int64 or int32 indices, but its input is {x.dtype}",
                             hint="declare the input with an integer dtype: input tokens: [32] int64")
        n = self.num_embeddings
        if self.padding_idx is not None and not -n <= self.padding_idx < n:
            raise ShapeError(f"padding_idx {self.padding_idx} is not an index into {self.num_embeddings} "
                             f"embeddings", arg="padding_idx")
        if x.top is not None and x.top >= n:
            raise ShapeError(f"Embedding has {n} rows (indices 0 to {n - 1}), but its input's indices "
                             f"reach {x.top}", arg="num_embeddings",
                             hint="a position embedding needs a row for every position: give it as "
                                  "many rows as the longest sequence")
        if self.sparse and self.scale_grad_by_freq:
            raise ShapeError("scale_grad_by_freq=true cannot train with sparse=true: torch has no "
                             "backward pass for the two together", arg="scale_grad_by_freq")
        return [TensorType(shape=x.shape + (self.embedding_dim,))]

    def weight_shape(self):
        return (self.num_embeddings, self.embedding_dim)

    def param_count(self):
        return self.own_weight()

    def args_label(self):
        return f"{self.num_embeddings}×{self.embedding_dim}"


@register
class Identity(Op):
    op: Literal["Identity"] = "Identity"
    family = "shape"
    prefix = "identity"
    torch = "nn.Identity"

    def shape(self, ins):
        return [ins[0]]
