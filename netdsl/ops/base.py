"""The declaration of a layer kind: parameters, shape rule, constructor, cost, in one class.

Every op is a frozen pydantic model whose fields are the torch constructor's parameters, in
torch's order, with torch's defaults. Class variables say how the op is drawn and built. The
live module, the generated source, the diagram and the summary all read these declarations;
nothing else in netdsl knows what a Conv2d is.

A field annotated with `Inferred()` is derived from the incoming shape (`in_features`): a spec
may omit it, and when it is given it is checked against the input. Positional arguments come in
two forms, told apart by their number (see `Op.positional_for`):
- the short form leaves the inferred fields out and fills the required ones in order:
  `Conv2d(16, 3)` is out_channels=16, kernel_size=3;
- torch's own form has more positional arguments than that and reads them exactly as torch
  does, inferred fields included: `Conv2d(3, 16, 3, 2)` is in_channels=3 (checked),
  out_channels=16, kernel_size=3, stride=2.
No call is read both ways: torch needs every required argument, so a call short enough to be
the short form is an error in torch.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar, Literal, Optional, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt
from typing_extensions import Annotated

from ..ir.types import TensorType

# ---- parameter types (strict: `Linear(2.5)`, `Linear(true)`, `Dropout("0.5")` are errors) ------
Int = StrictInt
PosInt = Annotated[StrictInt, Field(gt=0)]
NonNegInt = Annotated[StrictInt, Field(ge=0)]
Float = Union[StrictInt, StrictFloat]
PosFloat = Annotated[Float, Field(gt=0)]
Prob = Annotated[Float, Field(ge=0, le=1)]
Bool = StrictBool
Pair = Union[PosInt, tuple[PosInt, PosInt]]
Triple = Union[PosInt, tuple[PosInt, PosInt, PosInt]]
PadPair = Union[NonNegInt, tuple[NonNegInt, NonNegInt]]
PadTriple = Union[NonNegInt, tuple[NonNegInt, NonNegInt, NonNegInt]]
Shape = tuple[PosInt, ...]

INIT_FUNCTIONS = (
    "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal",
    "normal", "uniform", "zeros", "ones", "trunc_normal",
)
InitName = Optional[Literal[INIT_FUNCTIONS]]  # type: ignore[valid-type]


class Inferred:
    """Marks a field that shape inference fills in when the spec leaves it out."""


class Extra:
    """Marks a netdsl argument that is not a torch constructor argument (`init=`)."""


class ShapeError(Exception):
    """Raised by a shape rule; `arg` names the argument to point at (else the layer), `code`
    the diagnostic when it is not the shape pass's default (E301, or E302 for an inferred
    argument)."""

    code: str | None = None  # a subclass may fix it (backbone.WeightsError: E104)

    def __init__(self, message: str, arg: str | None = None, hint: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.message, self.arg, self.hint = message, arg, hint
        if code is not None:
            self.code = code


def _per_class(method):
    """Cache a classmethod that derives a list from the class's declaration: shape inference
    asks for these once per layer, and a spec may hold thousands of layers."""
    cache: dict[type, tuple] = {}

    @functools.wraps(method)
    def cached(cls):
        if cls not in cache:
            cache[cls] = tuple(method(cls))
        return list(cache[cls])

    return cached


class Op(BaseModel):
    """Base of all layer declarations."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: ClassVar[str] = "other"  # conv, norm, activation, pooling, linear, recurrent, merge,
    #                                  attention, embedding, shape, dropout, backbone, custom
    prefix: ClassVar[str] = "layer"  # attribute names: conv1, conv2, ...
    torch: ClassVar[str | None] = None  # "nn.Conv2d"; None for functional ops (no submodule)
    arity: ClassVar[tuple[int, int | None]] = (1, 1)  # (min, max) number of inputs
    fixed: ClassVar[dict[str, Any]] = {}  # constructor arguments netdsl always passes
    keyword_only: ClassVar[tuple[str, ...]] = ()  # fields torch takes by name only
    fixed_before: ClassVar[dict[str, str]] = {}  # where a fixed one sits in torch's order:
    #                                              {"batch_first": "dropout"}, before that field
    outputs: ClassVar[tuple[str, ...]] = ("out",)  # names of the values a call produces
    key_args: ClassVar[tuple[str, ...]] = ()  # shown on diagram nodes
    imports: ClassVar[tuple[str, ...]] = ()  # extra import lines the constructor needs
    varargs: ClassVar[str | None] = None  # a field that collects all positional arguments
    renames: ClassVar[bool] = True  # its output may take over its input's variable (x = conv(x))
    tensor_kwargs: ClassVar[tuple[str, ...]] = ()  # forward arguments that take values (masks)
    mixes_batch: ClassVar[bool] = False  # takes values with and without a batch as they are
    #                                      (`x + pos`); others read an unbatched value's first
    #                                      dimension as its batch (passes/shapes.py)

    # ---- what subclasses override --------------------------------------------------------
    def infer(self, ins: list[TensorType]) -> dict[str, Any]:
        """Values of the Inferred fields, from the input types."""
        return {}

    def shape(self, ins: list[TensorType]) -> list[TensorType]:
        """Output types from input types (Inferred fields are already filled in)."""
        raise NotImplementedError(f"{self.kind} declares no shape rule")

    def param_count(self) -> int:
        return 0

    def macs(self, ins: list[TensorType], outs: list[TensorType]) -> int:
        """Multiply-accumulates per sample (0 for ops that only move data)."""
        return 0

    def forward_expr(self, module: str | None, ins: list[str]) -> str:
        """The Python expression that applies this op (module is `self.conv1`)."""
        return f"{module}({', '.join(ins)})"

    def constructor(self) -> str | None:
        """What `__init__` calls to build it (`nn.Conv2d`; a Parameter's `torch.zeros`)."""
        return self.torch

    def init_statement(self, attr: str, call: str) -> str:
        """The `__init__` line that keeps the built object as `self.attr`."""
        return f"self.{attr} = {call}"

    def setup_lines(self, attr: str) -> list[str] | None:
        """Statements after the constructor (an init function); None: netdsl's `init=` rules."""
        return None

    def forward_lines(self, module: str | None, ins: list[str], outs: list[str | None]) -> list[str]:
        """Statements that apply this op; `outs[i]` is None where output i is never used."""
        lhs = ", ".join(o or "_" for o in outs)
        return [f"{lhs} = {self.forward_expr(module, ins)}"]

    # ---- derived from the declaration --------------------------------------------------------
    kind: ClassVar[str] = ""  # set by @register from the `op` literal

    @classmethod
    @_per_class
    def spec_fields(cls) -> list[str]:
        """Argument names a spec may use, in torch's order (op itself excluded)."""
        return [n for n in cls.model_fields if n not in ("op", "masks")]

    @classmethod
    @_per_class
    def torch_fields(cls) -> list[str]:
        """Torch's positional order: every constructor argument, inferred and fixed ones
        included (a positional argument on a fixed one must repeat netdsl's value)."""
        out = []
        for n, f in cls.model_fields.items():
            if n == "op" or _marker(f, Extra) or n in cls.keyword_only:
                continue
            out += [k for k, before in cls.fixed_before.items() if before == n]
            out.append(n)
        return out

    @classmethod
    @_per_class
    def positional_fields(cls) -> list[str]:
        """The short form's positional order: torch's, with the inferred fields left out."""
        return [n for n in cls.torch_fields()
                if n not in cls.fixed and not _marker(cls.model_fields[n], Inferred)]

    @classmethod
    def positional_for(cls, n: int) -> tuple[list[str], bool]:
        """The fields `n` positional arguments fill, and whether that is torch's full form.
        Up to as many as the short form requires, they are the short form; more, torch's."""
        if cls.inferred_fields() and n > len(cls.required_fields()):
            return cls.torch_fields(), True
        return cls.positional_fields(), False

    @classmethod
    @_per_class
    def float_fields(cls) -> list[str]:
        """Float-valued arguments (`eps`, `momentum`, `p`): an integer never lands on one by
        position, where it is almost always a size written in the wrong place."""
        return [n for n, f in cls.model_fields.items() if _admits_float(f.annotation)]

    @classmethod
    @_per_class
    def inferred_fields(cls) -> list[str]:
        return [n for n, f in cls.model_fields.items() if _marker(f, Inferred)]

    @classmethod
    @_per_class
    def extra_fields(cls) -> list[str]:
        return [n for n, f in cls.model_fields.items() if _marker(f, Extra)]

    @classmethod
    @_per_class
    def required_fields(cls) -> list[str]:
        return [n for n, f in cls.model_fields.items()
                if n != "op" and f.is_required() and not _marker(f, Inferred)]

    @classmethod
    def describe_field(cls, name: str) -> str:
        return describe_type(cls.model_fields[name].annotation)

    def ctor_args(self) -> tuple[list[Any], dict[str, Any]]:
        """Constructor arguments: torch's required ones positionally, then every optional one
        whose value differs from torch's default, then `fixed`."""
        args, kwargs = [], {}
        positional = True
        for name, f in type(self).model_fields.items():
            if name == "op" or _marker(f, Extra):
                continue
            value = getattr(self, name)
            positional = positional and (f.is_required() or _marker(f, Inferred) is not None)
            if positional:
                args.append(value)
            elif value != f.default:
                kwargs[name] = value
        kwargs.update(self.fixed)
        return args, kwargs

    def args_label(self) -> str:
        """Key arguments for diagrams: `6→16, k=5`."""
        parts = []
        fields = type(self).model_fields
        for name in self.key_args:
            v = getattr(self, name, None)
            if v is None or (name != "kernel_size" and name in fields and v == fields[name].default):
                continue
            if isinstance(v, tuple) and len(set(v)) == 1:
                v = v[0]
            parts.append(f"{_SHORT.get(name, name)}={_fmt(v)}")
        return ", ".join(parts)


    def label_args(self) -> str:
        """What summaries and diagrams show: the key arguments (`args_label`), then every other
        argument that differs from its default, so that what was built is visible."""
        cls = type(self)
        fields = cls.model_fields
        head = self.args_label()
        named = {p.split("=")[0] for p in head.split(", ") if "=" in p}  # `p=0.3` in the head
        shown = {*cls.key_args, *cls.inferred_fields(), *cls.required_fields(), "op",
                 *(n for n in fields if _SHORT.get(n, n) in named)}
        parts = [head]
        extra = cls.extra_fields()  # netdsl's own (init=, trainable=) after torch's
        for name in [n for n in fields if n not in extra] + extra:
            if name == "masks":  # inputs, drawn as edges
                continue
            v, f = getattr(self, name), fields[name]
            if name not in shown and v != f.default:
                parts.append(f"{_SHORT.get(name, name)}={_fmt(v)}")
        return ", ".join(p for p in parts if p)


_SHORT = {"kernel_size": "k", "stride": "s", "padding": "p", "dilation": "d", "num_heads": "heads",
          "hidden_size": "hidden", "num_layers": "layers", "scale_factor": "scale"}


def _fmt(v) -> str:
    if isinstance(v, Op):  # a layer given to a layer: TransformerEncoder's encoder_layer
        return f"{v.kind}({v.label_args()})"
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "none"}[v]
    if isinstance(v, tuple):
        return "(" + ", ".join(map(_fmt, v)) + ")"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _admits_float(tp) -> bool:
    if tp is StrictFloat or tp is float:
        return True
    return any(_admits_float(a) for a in get_args(tp))


def _marker(field, cls):
    for m in field.metadata:
        if isinstance(m, cls):
            return m
    return None


def describe_type(tp) -> str:
    """A human name for a parameter type, for error messages."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        text = describe_type(base)
        for m in meta:
            for attr, word in (("gt", "> "), ("ge", ">= "), ("lt", "< "), ("le", "<= ")):
                for mm in getattr(m, "metadata", [m]):
                    if getattr(mm, attr, None) is not None:
                        text += f" {word}{getattr(mm, attr)}"
        return text
    if origin is Union:
        parts = [describe_type(a) for a in get_args(tp) if a is not type(None)]
        text = " or ".join(dict.fromkeys(parts))
        return text + (" or none" if type(None) in get_args(tp) else "")
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {describe_type(args[0])}"
        return "(" + ", ".join(describe_type(a) for a in args) + ")"
    return {int: "int", float: "float", bool: "bool", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def tup(v, n: int) -> tuple:
    """`5` -> `(5, 5)`; tuples are returned as they are."""
    return tuple(v) if isinstance(v, tuple) else (v,) * n


def conv_out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


INT32_MAX = 2**31 - 1


def need_int32(**sizes: tuple[int, ...]) -> None:
    """Torch's pooling and convolution kernels keep kernel, stride, padding and dilation in
    32 bits: a larger value overflows inside torch ("value cannot be converted to type int")."""
    for arg, values in sizes.items():
        if any(abs(v) > INT32_MAX for v in values):
            raise ShapeError(f"{arg}={max(values, key=abs)} is out of range: torch keeps it in 32 bits "
                             f"(at most {INT32_MAX:,})", arg=arg)


def need_rank(ins: list[TensorType], *ranks: int, what: str = "") -> TensorType:
    """The single input, checked to have one of `ranks` dimensions (batch excluded)."""
    x = ins[0]
    if x.rank not in ranks:
        want = " or ".join(map(str, ranks))
        raise ShapeError(f"expects an input of {want} dimensions{what} (without batch), but gets "
                         f"{x.rank}: {x}")
    return x


def dim_index(d: int, x: TensorType, arg: str = "dim") -> int:
    """A dimension as torch counts it (0 is the batch, negative from the end) as an index into
    one sample's shape. The batch is not a sample's dimension: dim 0 is an error."""
    rank = x.rank + 1
    dims = f"[B, {', '.join(map(str, x.shape))}]"
    if not -rank <= d < rank:
        raise ShapeError(f"{arg}={d} is out of range for an input of {rank} dimensions {dims} "
                         f"(batch included)", arg=arg, hint=DIMS_HINT)
    if d % rank == 0:
        raise ShapeError(f"{arg}={d} is the batch dimension of {dims}; layers work within a sample: "
                         f"{arg} is one of 1..{rank - 1} or -1..-{rank - 1}", arg=arg, hint=DIMS_HINT)
    return d % rank - 1


DIMS_HINT = "dimensions count as in torch, 0 being the batch: on [B, C, H, W] channels are dim=1"


def numel(shape) -> int:
    return math.prod(shape)


FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")


def need_float(ins: list[TensorType], layer: str) -> None:
    """Every input must be floating point (torch's kernels and float weights refuse integers)."""
    for x in ins:
        if x.dtype not in FLOAT_DTYPES:
            raise ShapeError(f"{layer} needs floating-point input, but gets {x}",
                             hint="integer ids become vectors through an Embedding", code="E303")
