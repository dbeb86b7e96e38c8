"""Activations: elementwise, shape-preserving (Softmax and LogSoftmax take a `dim`; PReLU learns
its slopes)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Optional

from .base import Bool, Extra, Float, Int, Op, PosInt, ShapeError, dim_index, need_float
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
ReLU6 = _act("ReLU6", INPLACE, ints=True)
ReLU6.prefix = "relu6_"  # relu6_1, not relu61
Hardtanh = _act("Hardtanh", {"min_val": (Float, -1.0), "max_val": (Float, 1.0), **INPLACE},
                ("min_val", "max_val"), ints=True)
Hardsigmoid = _act("Hardsigmoid", INPLACE)
Mish = _act("Mish", INPLACE)
Softplus = _act("Softplus", {"beta": (Float, 1.0), "threshold": (Float, 20.0)}, ("beta", "threshold"))


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


# ---- numbers torch converts to a dtype must fit it ("value cannot be converted to type
# c10::Half without overflow"): floats up to the dtype's largest finite value, integers what
# truncates into the dtype's range.
FLOAT_MAX = {"float16": 65504.0, "bfloat16": 3.3895313892515355e38, "float32": 3.4028234663852886e38}
INT_RANGE = {"uint8": (0, 2**8), "int32": (-(2**31), 2**31), "int64": (-(2**63), 2**63)}


def need_representable(value, dtype: str, arg: str, layer: str) -> None:
    """`value`, an argument `layer` converts to `dtype`, must be a number of that dtype."""
    v = float(value)
    if dtype in FLOAT_MAX:
        ok, limit = abs(v) <= FLOAT_MAX[dtype], f"at most {FLOAT_MAX[dtype]:.5g} in size"
    elif dtype in INT_RANGE:
        lo, hi = INT_RANGE[dtype]
        ok, limit = lo <= v < hi, f"from {lo:,} to {hi - 1:,}"
    else:  # float64 holds every finite number; bool takes any (nonzero is true)
        return
    if not ok:
        raise ShapeError(f"{layer}: {arg}={value:g} does not fit {dtype}, the dtype torch converts "
                         f"it to here: it must be {limit}", arg=arg)


def _fitting(plain, *fields: str, in_input_dtype: bool = False):
    """`plain` (a shape rule), then `fields` checked against the dtype torch converts them to:
    the input's own (Hardtanh's limits), or the kernel's compute dtype, float32 unless the
    input is float64 (half-precision kernels compute in float32)."""
    def shape(self, ins):
        outs = plain(self, ins)
        dtype = ins[0].dtype if in_input_dtype else "float64" if ins[0].dtype == "float64" else "float32"
        for f in fields:
            need_representable(getattr(self, f), dtype, f, self.kind)
        return outs
    return shape


def _ordered_limits(self, ins, _plain=_Activation.shape):
    if self.min_val >= self.max_val:
        raise ShapeError(f"Hardtanh needs min_val < max_val, but gets min_val={self.min_val:g}, "
                         f"max_val={self.max_val:g}", arg="max_val")
    return _plain(self, ins)


LeakyReLU.shape = _fitting(LeakyReLU.shape, "negative_slope")
ELU.shape = _fitting(ELU.shape, "alpha")
Softplus.shape = _fitting(Softplus.shape, "beta", "threshold")
Hardtanh.shape = _fitting(_ordered_limits, "min_val", "max_val", in_input_dtype=True)


@register
class PReLU(_Activation):
    """A learned slope for negative inputs: one shared (`num_parameters=1`) or one per channel.
    `init` is torch's argument, the slopes' starting value (not an init function)."""

    op: Literal["PReLU"] = "PReLU"
    num_parameters: PosInt = 1
    init: Float = 0.25
    trainable: Annotated[Bool, Extra()] = True

    prefix = "prelu"
    torch = "nn.PReLU"
    key_args = ("num_parameters",)

    def shape(self, ins):
        x = ins[0]
        need_float(ins, "PReLU")
        if x.dtype != "float32":
            raise ShapeError(f"PReLU holds float32 weights, but gets {x}: torch needs the input in "
                             "the weights' dtype", code="E303", hint="declare the input float32 (the default)")
        if self.num_parameters != 1:
            if x.rank == 0:
                raise ShapeError(f"PReLU(num_parameters={self.num_parameters}) learns one slope per "
                                 f"channel, and its input {x} has no channels", arg="num_parameters",
                                 hint="num_parameters=1 learns one slope for all")
            if x.shape[0] != self.num_parameters:
                raise ShapeError(f"PReLU has {self.num_parameters} slopes, one per channel, but its "
                                 f"input {x} has {x.shape[0]} channels (dim 1)", arg="num_parameters",
                                 hint=f"num_parameters is 1 (one shared slope) or {x.shape[0]}")
        need_representable(self.init, "float32", "init", "PReLU")
        return [x]

    def param_count(self):
        return self.num_parameters
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
