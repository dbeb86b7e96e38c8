"""Activations: elementwise, shape-preserving (Softmax and LogSoftmax take a `dim`)."""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

from .base import Bool, Float, Int, Op, ShapeError, dim_index, need_float
from .registry import register


class _Activation(Op):
    family = "activation"
    ints: ClassVar[bool] = False  # whether torch takes integer input (and keeps its dtype)

    def shape(self, ins):
        if not self.ints:
            need_float(ins, self.kind)
        return [ins[0]]

    def macs(self, ins, outs):
        return 0


def _act(name: str, fields: dict, key_args=(), ints: bool = False):
    ns = {"__annotations__": {"op": Literal[name]}, "op": name, "__module__": __name__}
    for fname, (tp, default) in fields.items():
        ns["__annotations__"][fname] = tp
        ns[fname] = default
    cls = type(name, (_Activation,), ns)
    cls.prefix = name.lower()
    cls.torch = f"nn.{name}"
    cls.key_args = key_args
    cls.ints = ints
    return register(cls)


INPLACE = {"inplace": (Bool, False)}
ReLU = _act("ReLU", INPLACE, ints=True)
LeakyReLU = _act("LeakyReLU", {"negative_slope": (Float, 0.01), **INPLACE}, ("negative_slope",))
GELU = _act("GELU", {"approximate": (Literal["none", "tanh"], "none")})
SiLU = _act("SiLU", INPLACE)
ELU = _act("ELU", {"alpha": (Float, 1.0), **INPLACE})
Tanh = _act("Tanh", {})
Sigmoid = _act("Sigmoid", {})
Hardswish = _act("Hardswish", INPLACE)


def _no_negative_in_place(field: str, what: str):
    """LeakyReLU and ELU in place with a negative slope (alpha) have no backward in torch."""
    def shape(self, ins, _plain=_Activation.shape):
        if self.inplace and getattr(self, field) < 0:
            raise ShapeError(f"{self.kind}(inplace=true) with a negative {what} cannot train: torch "
                             "has no backward pass for it", arg="inplace", hint="leave inplace out")
        return _plain(self, ins)
    return shape


LeakyReLU.shape = _no_negative_in_place("negative_slope", "slope")
ELU.shape = _no_negative_in_place("alpha", "alpha")
Softmax = _act("Softmax", {"dim": (Optional[Int], None)}, ("dim",))
LogSoftmax = _act("LogSoftmax", {"dim": (Optional[Int], None)}, ("dim",))


def _check_dim(self, ins):
    x = ins[0]
    need_float(ins, self.kind)
    if self.dim is None:
        raise ShapeError(f"{self.kind} needs dim= (the dimension to normalise, as torch counts it: "
                         f"1..{x.rank} or negative)", hint=f"for class scores write {self.kind}(dim=-1)")
    dim_index(self.dim, x)
    return [x]


for _cls in (Softmax, LogSoftmax):
    _cls.shape = _check_dim
