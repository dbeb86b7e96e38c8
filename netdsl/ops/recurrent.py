"""Sequence layers: RNN, LSTM, GRU, MultiheadAttention and torch's fused
scaled_dot_product_attention (the transformer layers are in transformer.py).

Inputs are batch-first, `[T, features]` without the batch. A recurrent layer produces the output
sequence, then its final hidden state(s) batch-first: `out, h = x -> GRU(64)`; in a chain only the
output sequence flows on.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

from typing_extensions import Annotated

from .base import Bool, Extra, Float, Inferred, NonNegInt, Op, PosFloat, PosInt, Prob, ShapeError, need_float, need_rank
from .merge import broadcast
from .linear import Weighted
from .registry import register
from .transformer import _Masked, check_masks, mask_args


class _Recurrent(Weighted):
    family = "recurrent"
    fixed = {"batch_first": True}
    outputs = ("out", "h")
    gates: ClassVar[int] = 1
    key_args = ("hidden_size", "num_layers")

    def infer(self, ins):
        x = need_rank(ins, 2, what=" (time, features)")
        need_float(ins, self.kind)
        f = x.shape[-1]
        if self.input_size is not None and self.input_size != f:
            raise ShapeError(f"{self.kind} expects {self.input_size} input features but gets {f}",
                             arg="input_size")
        if getattr(self, "proj_size", 0) >= self.hidden_size:
            raise ShapeError(f"proj_size ({self.proj_size}) must be smaller than hidden_size "
                             f"({self.hidden_size})", arg="proj_size")
        return {"input_size": f}

    @property
    def _dirs(self) -> int:
        return 2 if self.bidirectional else 1

    def _h_out(self) -> int:
        return getattr(self, "proj_size", 0) or self.hidden_size

    def shape(self, ins):
        x = ins[0]
        t, layers = x.shape[0], self._dirs * self.num_layers
        out = x.with_shape((t, self._dirs * self._h_out()))
        h = x.with_shape((layers, self._h_out()))
        if self.outputs == ("out", "h", "c"):
            return [out, h, x.with_shape((layers, self.hidden_size))]
        return [out, h]

    def param_count(self):
        g, h, p = self.gates, self.hidden_size, getattr(self, "proj_size", 0)

        def per_layer(inp):  # one direction of one layer
            return g * h * inp + g * h * self._h_out() + (2 * g * h if self.bias else 0) + p * h

        # layer 0 reads the input, the rest read the layer below: closed form, as num_layers
        # may be any size the spec writes (E305 refuses the absurd ones)
        rest = (self.num_layers - 1) * per_layer(self._dirs * self._h_out())
        return (per_layer(self.input_size) + rest) * self._dirs

    def macs(self, ins, outs):
        t = ins[0].shape[0]
        return t * (self.param_count())

    def forward_lines(self, module, ins, outs):
        first = outs[0] or "_"
        states = outs[1:]
        used = [s for s in states if s]
        if not used:
            return [f"{first}, _ = {module}({ins[0]})"]
        lhs = ", ".join(s or "_" for s in states)
        lines = [f"{first}, {'(' + lhs + ')' if len(states) > 1 else lhs} = {module}({ins[0]})"]
        lines += [f"{s} = {s}.transpose(0, 1)  # batch first" for s in used]
        return lines


def _rnn(name: str, gates: int, before: dict | None = None, after: dict | None = None):
    """`before`/`after`: the fields this kind adds, before `bias` and after `bidirectional`."""
    ns = {
        "__annotations__": {
            "op": Literal[name],
            "input_size": Annotated[Optional[PosInt], Inferred()],
            "hidden_size": PosInt,
            "num_layers": PosInt,
        },
        "op": name, "input_size": None, "num_layers": 1, "__module__": __name__,
    }
    for fname, (tp, default) in {**(before or {}), "bias": (Bool, True), "dropout": (Prob, 0.0),
                                 "bidirectional": (Bool, False), **(after or {})}.items():
        ns["__annotations__"][fname] = tp
        ns[fname] = default
    cls = type(name, (_Recurrent,), ns)
    cls.gates = gates
    cls.prefix = name.lower()
    cls.torch = f"nn.{name}"
    cls.fixed_before = {"batch_first": "dropout"}
    if name == "LSTM":
        cls.outputs = ("out", "h", "c")
    return register(cls)


RNN = _rnn("RNN", 1, before={"nonlinearity": (Literal["tanh", "relu"], "tanh")})
LSTM = _rnn("LSTM", 4, after={"proj_size": (NonNegInt, 0)})
GRU = _rnn("GRU", 3)


@register
class MultiheadAttention(_Masked):
    """Self-attention on one input (`x -> MultiheadAttention(8)`), or query, key, value on three.
    Masks as torch's forward takes them: `key_padding_mask=pad` ([B, S] bool, true: padding),
    and `is_causal=true` (netdsl makes the causal attn_mask)."""

    op: Literal["MultiheadAttention"] = "MultiheadAttention"
    embed_dim: Annotated[Optional[PosInt], Inferred()] = None
    num_heads: PosInt
    dropout: Prob = 0.0
    bias: Bool = True
    add_bias_kv: Bool = False
    add_zero_attn: Bool = False
    kdim: Optional[PosInt] = None
    vdim: Optional[PosInt] = None
    is_causal: Annotated[Bool, Extra()] = False  # forward's: a causal attn_mask

    family = "attention"
    prefix = "attn"
    tensor_kwargs = ("key_padding_mask",)
    torch = "nn.MultiheadAttention"
    fixed = {"batch_first": True}
    arity = (1, 3)
    outputs = ("out", "weights")
    key_args = ("num_heads",)

    def infer(self, ins):
        ins, _ = self.split(ins)
        if len(ins) == 2:
            raise ShapeError("MultiheadAttention takes one input (self-attention) or three "
                             "(query, key, value)")
        q = need_rank(ins, 2, what=" (time, features)")
        need_float(ins, "MultiheadAttention")
        e = q.shape[-1]
        if self.embed_dim is not None and self.embed_dim != e:
            raise ShapeError(f"MultiheadAttention expects {self.embed_dim} features but gets {e}",
                             arg="embed_dim")
        if e % self.num_heads:
            raise ShapeError(f"embed_dim {e} is not divisible by num_heads {self.num_heads}",
                             arg="num_heads")
        k, v = (ins[1], ins[2]) if len(ins) == 3 else (q, q)  # self-attention: x is the key too
        for t, role in ((k, "key"), (v, "value")):
            if t.rank != 2:
                raise ShapeError(f"the {role} must have 2 dimensions (time, features) without batch, "
                                 f"but gets {t}")
        if k.shape[0] != v.shape[0]:
            raise ShapeError(f"key and value must have the same length, got {k} and {v}")
        if k.shape[-1] != (self.kdim or e):
            raise ShapeError(f"key has {k.shape[-1]} features; set kdim={k.shape[-1]}", arg="kdim")
        if v.shape[-1] != (self.vdim or e):
            raise ShapeError(f"value has {v.shape[-1]} features; set vdim={v.shape[-1]}", arg="vdim")
        return {"embed_dim": e}

    def shape(self, ins):
        ins, masks = self.split(ins)
        q = ins[0]
        check_masks(self, masks, q.shape[0], ins[1].shape[0] if len(ins) == 3 else q.shape[0])
        # the weights span the keys, plus one for each of bias_k and the zero attention column
        s = (ins[1].shape[0] if len(ins) == 3 else q.shape[0]) + self.add_bias_kv + self.add_zero_attn
        return [q, q.with_shape((q.shape[0], s))]

    def param_count(self):
        e, k, v = self.embed_dim, self.kdim or self.embed_dim, self.vdim or self.embed_dim
        n = e * e + e * k + e * v + e * e
        if self.bias:
            n += 3 * e + e
        if self.add_bias_kv:
            n += 2 * e
        return n

    def macs(self, ins, outs):
        ins, _ = self.split(ins)
        t, s, e = ins[0].shape[0], outs[1].shape[1], self.embed_dim
        keys = ins[1].shape[0] if len(ins) == 3 else t
        k, v = self.kdim or e, self.vdim or e
        return t * e * e * 2 + keys * (k + v) * e + 2 * t * s * e  # q and out; k and v; scores, sum

    def forward_lines(self, module, ins, outs):
        main, _ = self.split(ins)
        q, k, v = (main * 3) if len(main) == 1 else main
        weights = outs[1] is not None
        call = f"{module}({', '.join([q, k, v, f'need_weights={weights}', *mask_args(self, ins, q)])})"
        return [f"{outs[0] or '_'}, {outs[1] or '_'} = {call}"]


@register
class scaled_dot_product_attention(Op):
    """`scaled_dot_product_attention(q, k, v, is_causal=true)`: attention as torch's fused
    `F.scaled_dot_product_attention`, on [..., L, E] queries and [..., S, E] keys ([B, heads, T,
    head_dim] as nanoGPT shapes them). A fourth input is the mask (bool: true attends; float:
    added to the scores). `dropout` applies in training only, as nn.MultiheadAttention's does
    (torch's own `dropout_p` would apply in eval too)."""

    op: Literal["scaled_dot_product_attention"] = "scaled_dot_product_attention"
    is_causal: Bool = False
    dropout: Prob = 0.0
    scale: Optional[PosFloat] = None

    family = "attention"
    prefix = "sdpa"
    arity = (3, 4)
    key_args = ("is_causal",)

    def shape(self, ins):
        q, k, v = ins[:3]
        need_float(ins[:3], "scaled_dot_product_attention")
        if len({q.rank, k.rank, v.rank}) > 1 or q.rank < 2:
            raise ShapeError(f"query, key and value need the same rank of 2 or more (batch excluded), "
                             f"but get {q}, {k} and {v}")
        if q.shape[-1] != k.shape[-1]:
            raise ShapeError(f"query and key must have the same last dimension, but get {q} and {k}")
        if k.shape[-2] != v.shape[-2]:
            raise ShapeError(f"key and value must have the same length, but get {k} and {v}")
        if len({q.dtype, k.dtype, v.dtype}) > 1:
            raise ShapeError(f"query, key and value must share a dtype: {q.dtype}, {k.dtype}, {v.dtype}",
                             code="E303")
        lead = broadcast(q.with_shape(q.shape[:-2]), k.with_shape(k.shape[:-2]))
        lead = broadcast(q.with_shape(lead), v.with_shape(v.shape[:-2]))
        if len(ins) == 4:
            m = ins[3]
            if self.is_causal:
                raise ShapeError("a mask and is_causal=true together: torch takes one or the other",
                                 arg="is_causal")
            if m.dtype != "bool" and m.dtype != q.dtype:
                raise ShapeError(f"the mask is bool (true attends) or {q.dtype} (added to the scores), "
                                 f"not {m.dtype}", code="E303")
            want = q.with_shape((*lead, q.shape[-2], k.shape[-2]))
            try:
                got = broadcast(want, m) if m.has_batch else broadcast(want, m.with_shape(m.shape[-want.rank:]))
            except ShapeError:
                got = None
            if got != want.shape or (not m.has_batch and m.rank > want.rank + 1):
                raise ShapeError(f"the mask {m} does not broadcast to the scores {want}")
        return [q.with_shape((*lead, q.shape[-2], v.shape[-1]))]

    def macs(self, ins, outs):
        q, k = ins[0], ins[1]
        return 2 * q.numel * k.shape[-2]

    def forward_expr(self, module, ins):
        args = list(ins[:3])
        if len(ins) == 4:
            args.append(f"attn_mask={ins[3]}")
        if self.dropout:
            args.append(f"dropout_p={self.dropout!r} if self.training else 0.0")
        if self.is_causal:
            args.append("is_causal=True")
        if self.scale is not None:
            args.append(f"scale={self.scale!r}")
        return f"F.scaled_dot_product_attention({', '.join(args)})"
