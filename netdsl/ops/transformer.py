"""Transformers as torch.nn has them: TransformerEncoderLayer, TransformerDecoderLayer (with
cross-attention on a second input, the memory), and the TransformerEncoder and TransformerDecoder
stacks built from one such layer.

Masks are values given by name, as torch's forward takes them: `x -> TransformerEncoderLayer(8,
src_key_padding_mask=pad)`, where `pad` is a [B, S] bool value (true: padding, not attended).
`is_causal=true` (`tgt_is_causal=true` for a decoder) makes the causal mask itself. A stack takes its layer as torch does:
`TransformerEncoder(TransformerEncoderLayer(512, 8), 6)`.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

from typing_extensions import Annotated

from ..ir.types import TensorType
from .base import Bool, Extra, Float, Inferred, Op, PosInt, Prob, ShapeError, need_float, need_rank
from .linear import Weighted
from .norm import LayerNorm
from .registry import register


def causal(x: str) -> str:
    """A causal mask for a [B, T, ...] value in torch's bool convention for nn.Transformer and
    nn.MultiheadAttention: true above the diagonal, where a position may not attend."""
    return f"torch.ones({x}.size(1), {x}.size(1), dtype=torch.bool, device={x}.device).triu(1)"


def check_masks(op: Op, masks: dict[str, TensorType], length: int, keys: int) -> None:
    """Key-padding masks are [B, S] bool, one flag per key (per target position for the
    target's); a causal mask needs as many queries as keys."""
    for name, m in masks.items():
        want = length if name.startswith("tgt") else keys
        if m.dtype != "bool":
            raise ShapeError(f"{name} is {m}: a key padding mask is bool (true: padding, not "
                             "attended, as in torch.nn's transformers)", arg=name, code="E303")
        if not m.has_batch or m.shape != (want,):
            raise ShapeError(f"{name} must be [B, {want}], one flag per key, but is {m}", arg=name)
    flag = op.causal_flag
    if getattr(op, flag, False) and flag == "is_causal" and length != keys:
        raise ShapeError(f"a causal mask needs as many queries as keys, but there are {length} "
                         f"and {keys}", arg=flag)


def mask_args(op: Op, ins: list[str], first: str) -> list[str]:
    """The forward's keyword arguments: the masks the spec gave, and the causal mask with
    torch's flag for it (torch takes the flag as a hint that the mask it is given is causal)."""
    n = len(ins) - len(op.masks)
    out = [f"{name}={v}" for name, v in zip(op.masks, ins[n:])]
    if getattr(op, op.causal_flag, False):
        out += [f"{op.causal_mask}={causal(first)}", f"{op.causal_flag}=True"]
    return out


class _Masked(Weighted):
    """A layer whose forward takes masks: key padding masks by name (values), and a causal
    flag from which netdsl makes the causal mask. torch's other masks (`attn_mask`, `src_mask`
    of [L, S] or [B * heads, L, S]) are not values a spec makes: they are not offered."""

    masks: Annotated[tuple[str, ...], Extra()] = ()  # the mask inputs given, after the others
    causal_flag: ClassVar[str] = "is_causal"
    causal_mask: ClassVar[str] = "attn_mask"  # the forward argument that takes the causal mask

    def split(self, ins: list[TensorType]) -> tuple[list[TensorType], dict[str, TensorType]]:
        n = len(ins) - len(self.masks)
        return ins[:n], dict(zip(self.masks, ins[n:]))


def _model_dim(op, x: TensorType, layer: str) -> int:
    need_rank([x], 2, what=" (time, features)")
    need_float([x], layer)
    e = x.shape[-1]
    if op.d_model is not None and op.d_model != e:
        raise ShapeError(f"{layer} expects d_model {op.d_model} but gets {e}", arg="d_model")
    if e % op.nhead:
        raise ShapeError(f"d_model {e} is not divisible by nhead {op.nhead}", arg="nhead")
    return e


def _attn_params(d: int, bias: bool) -> int:
    return 4 * d * d + (4 * d if bias else 0)


def _ff_params(d: int, f: int, bias: bool) -> int:
    return 2 * d * f + ((f + d) if bias else 0)


class _Layer(_Masked):
    """The parameters torch's encoder and decoder layers share, in torch's order."""

    d_model: Annotated[Optional[PosInt], Inferred()] = None
    nhead: PosInt
    dim_feedforward: PosInt = 2048
    dropout: Prob = 0.1
    activation: Literal["relu", "gelu"] = "relu"
    layer_norm_eps: Float = 1e-5
    norm_first: Bool = False
    bias: Bool = True

    family = "attention"
    fixed = {"batch_first": True}
    fixed_before = {"batch_first": "norm_first"}
    key_args = ("nhead", "dim_feedforward")


@register
class TransformerEncoderLayer(_Layer):
    op: Literal["TransformerEncoderLayer"] = "TransformerEncoderLayer"
    is_causal: Annotated[Bool, Extra()] = False  # forward's: a causal src_mask

    prefix = "encoder"
    torch = "nn.TransformerEncoderLayer"
    tensor_kwargs = ("src_key_padding_mask",)
    causal_mask = "src_mask"

    def infer(self, ins):
        (x,), _ = self.split(ins)
        return {"d_model": _model_dim(self, x, "TransformerEncoderLayer")}

    def shape(self, ins):
        (x,), masks = self.split(ins)
        check_masks(self, masks, x.shape[0], x.shape[0])
        return [x]

    def param_count(self):
        d, b = self.d_model, self.bias
        return _attn_params(d, b) + _ff_params(d, self.dim_feedforward, b) + 2 * (d + (d if b else 0))

    def macs(self, ins, outs):
        t, d, f = ins[0].shape[0], self.d_model, self.dim_feedforward
        return t * (4 * d * d + 2 * d * f) + 2 * t * t * d

    def forward_expr(self, module, ins):
        return f"{module}({', '.join([ins[0], *mask_args(self, ins, ins[0])])})"


@register
class TransformerDecoderLayer(_Layer):
    """`(tgt, memory) -> TransformerDecoderLayer(8)`: self-attention over the target, attention
    to the memory (the encoder's output), then the feed-forward block."""

    op: Literal["TransformerDecoderLayer"] = "TransformerDecoderLayer"
    tgt_is_causal: Annotated[Bool, Extra()] = False  # forward's: a causal tgt_mask

    prefix = "decoder"
    torch = "nn.TransformerDecoderLayer"
    arity = (2, 2)
    tensor_kwargs = ("tgt_key_padding_mask", "memory_key_padding_mask")
    causal_flag = "tgt_is_causal"
    causal_mask = "tgt_mask"

    def infer(self, ins):
        (tgt, memory), _ = self.split(ins)
        d = _model_dim(self, tgt, "TransformerDecoderLayer")
        if memory.rank != 2 or memory.shape[-1] != d:
            raise ShapeError(f"the memory must be [S, {d}] (the target's d_model), but is {memory}")
        need_float([memory], "TransformerDecoderLayer")
        return {"d_model": d}

    def shape(self, ins):
        (tgt, memory), masks = self.split(ins)
        check_masks(self, masks, tgt.shape[0], memory.shape[0])
        return [tgt]

    def param_count(self):
        d, b = self.d_model, self.bias
        return 2 * _attn_params(d, b) + _ff_params(d, self.dim_feedforward, b) + 3 * (d + (d if b else 0))

    def macs(self, ins, outs):
        t, s, d, f = ins[0].shape[0], ins[1].shape[0], self.d_model, self.dim_feedforward
        return t * (6 * d * d + 2 * d * f) + s * 2 * d * d + 2 * t * t * d + 2 * t * s * d

    def forward_expr(self, module, ins):
        return f"{module}({', '.join([ins[0], ins[1], *mask_args(self, ins, ins[0])])})"


class _Stack(_Masked):
    """N copies of one layer (torch deep-copies the layer it is given), and a final norm.
    (The fields are the subclasses', in torch's order: the layer, num_layers, norm.)"""

    layer_field: ClassVar[str] = ""

    family = "attention"
    key_args = ("num_layers",)

    @property
    def layer(self):
        return getattr(self, self.layer_field)

    def infer(self, ins):
        main, _ = self.split(ins)
        try:
            layer = self.layer.model_copy(update=self.layer.infer(main))
        except ShapeError as exc:  # at the layer given to the stack, with the layer's own code
            cls = type(self.layer)
            inferred = exc.arg in cls.inferred_fields()
            hint = exc.hint or (f"leave {exc.arg} out to take it from the input: "
                                f"{cls.kind}({', '.join(cls.required_fields())}, ...)" if inferred else None)
            raise ShapeError(exc.message, arg=self.layer_field, hint=hint,
                             code=exc.code or ("E302" if inferred else None)) from None
        out = {self.layer_field: layer}
        if self.norm is not None:
            norm = self.norm.model_copy(update=self.norm.infer(main[:1]))
            if norm.normalized_shape not in (layer.d_model, (layer.d_model,)):
                raise ShapeError(f"the final norm is over {norm.normalized_shape} features, but the "
                                 f"layers make {layer.d_model}", arg="norm")
            out["norm"] = norm
        return out

    def shape(self, ins):
        main, masks = self.split(ins)
        check_masks(self, masks, main[0].shape[0], main[-1].shape[0])
        return [main[0]]

    def param_count(self):
        return self.num_layers * self.layer.param_count() + (self.norm.param_count() if self.norm else 0)

    def macs(self, ins, outs):
        main, _ = self.split(ins)
        return self.num_layers * self.layer.macs(main, outs) + (2 * outs[0].numel if self.norm else 0)

    def args_label(self):
        return f"{self.layer.kind}({self.layer.label_args()}) ×{self.num_layers}"


@register
class TransformerEncoder(_Stack):
    """`TransformerEncoder(TransformerEncoderLayer(512, 8), 6)`, state_dict keys as torch's
    (`layers.0.self_attn.in_proj_weight`, ...)."""

    op: Literal["TransformerEncoder"] = "TransformerEncoder"
    encoder_layer: TransformerEncoderLayer
    num_layers: PosInt
    norm: Optional[LayerNorm] = None
    enable_nested_tensor: Bool = True
    mask_check: Bool = True
    is_causal: Annotated[Bool, Extra()] = False

    prefix = "encoder"
    torch = "nn.TransformerEncoder"
    layer_field = "encoder_layer"
    tensor_kwargs = ("src_key_padding_mask",)
    causal_mask = "mask"

    def forward_expr(self, module, ins):
        return f"{module}({', '.join([ins[0], *mask_args(self, ins, ins[0])])})"


@register
class TransformerDecoder(_Stack):
    """`(tgt, memory) -> TransformerDecoder(TransformerDecoderLayer(512, 8), 6)`."""

    op: Literal["TransformerDecoder"] = "TransformerDecoder"
    decoder_layer: TransformerDecoderLayer
    num_layers: PosInt
    norm: Optional[LayerNorm] = None
    tgt_is_causal: Annotated[Bool, Extra()] = False

    prefix = "decoder"
    torch = "nn.TransformerDecoder"
    arity = (2, 2)
    layer_field = "decoder_layer"
    tensor_kwargs = ("tgt_key_padding_mask", "memory_key_padding_mask")
    causal_flag = "tgt_is_causal"
    causal_mask = "tgt_mask"

    def forward_expr(self, module, ins):
        return f"{module}({', '.join([ins[0], ins[1], *mask_args(self, ins, ins[0])])})"
