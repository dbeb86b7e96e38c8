"""Tensor arithmetic as torch does it: `a - b`, `a / b`, `a @ b`, numbers mixed with tensors
(`x * 0.5`, `1 - x`, `scores / sqrt(d)`), unary minus, and the elementwise functions `abs`,
`exp`, `log`, `sqrt`. Each has a shape rule and torch's dtype rule (int / int is float)."""

from __future__ import annotations

from typing import ClassVar, Literal

from .base import Bool, Float, Op, ShapeError
from .merge import _Elementwise, broadcast
from .registry import register

FLOATS = ("float32", "float64", "float16", "bfloat16")


@register
class Sub(_Elementwise):
    """`a - b`, with broadcasting."""

    op: Literal["Sub"] = "Sub"
    prefix = "sub"
    symbol = "-"
    arity = (2, 2)

    def shape(self, ins):
        if any(t.dtype == "bool" for t in ins):
            raise ShapeError("torch cannot subtract bool tensors", code="E303",
                             hint="for 'one but not the other' of two masks, use a layer of your own")
        return super().shape(ins)


@register
class Div(_Elementwise):
    """`a / b`, true division as in torch: integer inputs give float32."""

    op: Literal["Div"] = "Div"
    prefix = "div"
    symbol = "/"
    arity = (2, 2)

    def shape(self, ins):
        out = super().shape(ins)[0]
        return [out if out.dtype in FLOATS else out.model_copy(update={"dtype": "float32"})]


@register
class MatMul(Op):
    """`a @ b`: a matrix product per sample, as torch.matmul on [B, ..., n, k] @ [B, ..., k, m]."""

    op: Literal["MatMul"] = "MatMul"

    family = "merge"
    prefix = "matmul"
    arity = (2, 2)

    def shape(self, ins):
        a, b = ins
        if a.rank < 2 or b.rank < 2:
            one = a if a.rank < 2 else b
            raise ShapeError(f"a @ b multiplies matrices within each sample, but {one} is a vector per "
                             "sample: torch would treat the batch as a matrix dimension",
                             hint="make it a matrix first: -> Unflatten(1, (1, n)), or use Linear")
        if a.rank != b.rank:  # the batch would meet a feature dimension
            raise ShapeError(f"cannot multiply {a} @ {b}: their ranks differ (batch excluded), so "
                             "torch would line the batch up with a feature dimension")
        if a.shape[-1] != b.shape[-2]:
            raise ShapeError(f"cannot multiply {a} @ {b}: {a.shape[-1]} columns against "
                             f"{b.shape[-2]} rows")
        if a.dtype != b.dtype:
            raise ShapeError(f"cannot multiply {a} @ {b}: the dtypes differ", code="E303")
        if a.dtype not in FLOATS:
            raise ShapeError(f"a @ b needs floating-point values, but gets {a.dtype}", code="E303")
        lead = broadcast(a.with_shape(a.shape[:-2]), b.with_shape(b.shape[:-2])) if a.rank > 2 else ()
        return [a.with_shape((*lead, a.shape[-2], b.shape[-1]))]

    def forward_expr(self, module, ins):
        return f"{ins[0]} @ {ins[1]}"

    def macs(self, ins, outs):
        return outs[0].numel * ins[0].shape[-1]


@register
class Scalar(Op):
    """A tensor and a number: `x * 0.5`, `1 - x`, `x ** 2`, `scores / 8.0`. `reverse` puts
    the number on the left."""

    op: Literal["Scalar"] = "Scalar"
    symbol: Literal["+", "-", "*", "/", "**"]
    value: Float
    reverse: Bool = False

    family = "merge"
    prefix = "scalar"
    key_args = ("symbol", "value", "reverse")  # all said by args_label: `2 ** x`

    def shape(self, ins):
        x = ins[0]
        if x.dtype == "bool" and self.symbol == "-":
            raise ShapeError("torch cannot subtract with bool tensors", code="E303",
                             hint="make it a number first, or use `not`-style logic in a layer")
        if self.symbol == "/" and self.value == 0 and not self.reverse:
            raise ShapeError("division by zero: every value would be inf or nan", arg="value")
        if self.symbol == "**" and x.dtype not in FLOATS and type(self.value) is int and self.value < 0 \
                and not self.reverse:
            raise ShapeError(f"torch does not raise {x.dtype} values to a negative integer power",
                             code="E303", hint=f"divide instead, or write ** {self.value}.0")
        if x.dtype not in FLOATS and (isinstance(self.value, float) or self.symbol == "/"):
            return [x.model_copy(update={"dtype": "float32"})]
        if x.dtype == "bool":  # torch: bool with an integer computes in int64
            return [x.model_copy(update={"dtype": "int64"})]
        return [x]

    def forward_expr(self, module, ins):
        number = repr(self.value) if self.value >= 0 else f"({self.value!r})"
        return f"{number} {self.symbol} {ins[0]}" if self.reverse else f"{ins[0]} {self.symbol} {number}"

    def args_label(self):
        v = f"{self.value:g}"
        return f"{v} {self.symbol} x" if self.reverse else f"x {self.symbol} {v}"

    def macs(self, ins, outs):
        return outs[0].numel


@register
class Neg(Op):
    """`-x`."""

    op: Literal["Neg"] = "Neg"
    family = "merge"
    prefix = "neg"

    def shape(self, ins):
        if ins[0].dtype == "bool":
            raise ShapeError("torch cannot negate a bool tensor", code="E303")
        return [ins[0]]

    def forward_expr(self, module, ins):
        return f"-{ins[0]}"


class _Function(Op):
    """An elementwise torch function applied to a value: `abs(a - b)`, `exp(x)`."""

    family = "activation"
    ints: ClassVar[bool] = False  # whether it takes integer input (and keeps its dtype)

    def shape(self, ins):
        return [ins[0]]

    def forward_expr(self, module, ins):
        return f"torch.{self.kind}({ins[0]})"


def _function(name: str, ints: bool = False):
    ns = {"__annotations__": {"op": Literal[name]}, "op": name, "__module__": __name__,
          "__doc__": f"`{name}(x)`: torch.{name}, elementwise."}
    cls = type(name, (_Function,), ns)
    cls.prefix = name
    cls.ints = ints
    return register(cls)


abs_ = _function("abs", ints=True)
exp = _function("exp")
log = _function("log")
sqrt = _function("sqrt")
