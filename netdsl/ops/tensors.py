"""Tensors a model holds rather than computes: `Parameter` (learned) and `Buffer` (kept in the
state_dict, not learned). Each is the whole tensor, as torch has it: it has no batch dimension.

    class_token = Parameter(1, 1, 768)                     # nn.Parameter(torch.zeros(1, 1, 768))
    pos = Parameter(1, 197, 768, init=normal, std=0.02)    # torch.empty(...) + nn.init.normal_
    gamma = Parameter(96, 1, 1, init=constant, value=1e-6) # ConvNeXt's layer scale
    seen = Buffer(10, dtype=bool)                          # kept with the weights, not learned

The state_dict key is the name the spec binds (`class_token`). Such a value meets batched ones as
torch broadcasts (`x + pos`, `gamma * x`), and is expanded over the batch where a layer needs one
sample per row: `class_token.expand(x.size(0), -1, -1)`.
"""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from ..ir.types import DTYPES, TensorType
from .base import Bool, Extra, Float, Int, Op, PosFloat, PosInt, ShapeError, dim_index
from .registry import register

FLOATS = ("float32", "float64", "float16", "bfloat16")
FILLS = ("zeros", "ones", "constant", "normal", "trunc_normal", "uniform", "xavier_uniform",
         "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal")


class _Held(Op):
    """A tensor of the module's own: made in `__init__`, read in `forward` as `self.name`."""

    size: tuple[PosInt, ...]
    init: Literal[FILLS] = "zeros"  # type: ignore[valid-type]
    value: Float = 0.0  # init=constant
    std: PosFloat = 1.0  # init=normal, trunc_normal
    a: Float = 0.0  # init=uniform: the range [a, b)
    b: Float = 1.0
    dtype: Literal[DTYPES] = "float32"  # type: ignore[valid-type]

    family = "parameter"
    arity = (0, 0)
    varargs = "size"
    holder: ClassVar[str] = ""
    dtypes: ClassVar[tuple[str, ...]] = ()

    def shape(self, ins):
        if not self.size:
            raise ShapeError(f"{self.kind} needs a shape: {self.kind}(1, 1, 768)", arg="size")
        if self.dtype not in self.dtypes:
            raise ShapeError(f"a {self.kind} is one of {', '.join(self.dtypes)}, not {self.dtype}",
                             arg="dtype", code="E303",
                             hint="only floating-point tensors learn" if self.kind == "Parameter" else None)
        if self.dtype not in FLOATS and self.init not in ("zeros", "ones", "constant"):
            raise ShapeError(f"init={self.init} draws floating-point numbers; a {self.dtype} tensor "
                             "starts as zeros, ones or a constant", arg="init", code="E303")
        if self.init in ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal",
                         "orthogonal") and len(self.size) < 2:
            raise ShapeError(f"init={self.init} needs a tensor of at least 2 dimensions (torch reads "
                             f"fan-in and fan-out from them), but the shape is {list(self.size)}",
                             arg="init")
        if self.init == "uniform" and not self.a < self.b:
            raise ShapeError(f"init=uniform draws from [a, b), but a={self.a} is not below b={self.b}",
                             arg="b")
        return [TensorType(shape=self.size, dtype=self.dtype, has_batch=False)]

    def ctor_args(self):
        if self.init == "constant":
            return [self.size, self.value], {}
        return list(self.size), {}

    def constructor(self) -> str:
        return {"zeros": "torch.zeros", "ones": "torch.ones", "constant": "torch.full"}.get(
            self.init, "torch.empty")

    def init_statement(self, attr: str, call: str) -> str:
        if self.dtype != "float32":  # a validated dtype name: torch.float64, torch.bool
            call = f"{call[:-1]}, dtype=torch.{self.dtype})"
        return self.holder.format(attr=attr, call=call)

    def setup_lines(self, attr: str) -> list[str]:
        fn = f"nn.init.{self.init}_(self.{attr}"
        if self.init in ("zeros", "ones", "constant"):
            return []
        if self.init in ("normal", "trunc_normal"):
            return [f"{fn}, std={self.std!r})" if self.std != 1.0 else f"{fn})"]
        if self.init == "uniform":
            return [f"{fn}, a={self.a!r}, b={self.b!r})"]
        return [f"{fn})"]

    def forward_expr(self, module, ins):
        return module

    def args_label(self):
        return "×".join(map(str, self.size))

    def macs(self, ins, outs):
        return 0


@register
class Parameter(_Held):
    """`Parameter(1, 1, 768)`: a learned tensor, as `nn.Parameter(torch.zeros(1, 1, 768))`."""

    op: Literal["Parameter"] = "Parameter"
    trainable: Annotated[Bool, Extra()] = True

    prefix = "param"
    torch = "nn.Parameter"
    dtypes = FLOATS
    holder = "self.{attr} = nn.Parameter({call})"

    def param_count(self):
        return math.prod(self.size)


@register
class Buffer(_Held):
    """`Buffer(1, 10)`: a tensor kept with the weights (state_dict, `.to(device)`) but never
    learned, as `self.register_buffer("name", torch.zeros(1, 10))`."""

    op: Literal["Buffer"] = "Buffer"

    prefix = "buffer"
    torch = "buffer"
    dtypes = DTYPES
    holder = 'self.register_buffer("{attr}", {call})'


@register
class arange(Op):
    """`arange(x.size(1))`: the positions 0..T-1 along dimension `dim` of `x`, as
    `torch.arange(x.size(1), device=x.device)` (int64, without a batch: GPT's `pos`)."""

    op: Literal["arange"] = "arange"
    dim: Int

    family = "shape"
    prefix = "arange"
    mixes_batch = True  # reads a batched value, makes one without a batch
    renames = False  # positions, not the tokens: `pos = torch.arange(...)`, never `idx = ...`
    key_args = ("dim",)

    def shape(self, ins):
        x = ins[0]
        if not x.has_batch:
            if not -x.rank <= self.dim < x.rank:
                raise ShapeError(f"dim={self.dim} is out of range for {x}", arg="dim")
            n = x.shape[self.dim]
        else:
            n = x.shape[dim_index(self.dim, x)]
        return [TensorType(shape=(n,), dtype="int64", has_batch=False, top=n - 1)]

    def forward_expr(self, module, ins):
        return f"torch.arange({ins[0]}.size({self.dim}), device={ins[0]}.device)"


@register
class expand(Op):
    """`t.expand(x.size(0), -1, -1)`: a tensor without a batch (a class token [1, 1, D]) repeated
    over the batch of `x`, as torch's `Tensor.expand` (a view: no copy)."""

    op: Literal["expand"] = "expand"
    sizes: tuple[Int, ...]  # after the batch: -1 keeps a dimension

    family = "shape"
    prefix = "expand"
    arity = (2, 2)
    mixes_batch = True
    varargs = "sizes"

    def shape(self, ins):
        t, x = ins
        if t.has_batch:
            raise ShapeError(f"{t} already has a batch dimension; expand takes a Parameter, a Buffer "
                             "or an arange", hint="values with a batch broadcast by themselves: x + y")
        if not x.has_batch:
            raise ShapeError(f"the batch size comes from a value with a batch, but {x} has none")
        if len(self.sizes) + 1 != t.rank:
            raise ShapeError(f"{t} has {t.rank} dimensions, so expand takes {t.rank} sizes "
                             f"(the batch's first), not {len(self.sizes) + 1}", arg="sizes")
        if t.shape[0] != 1:
            raise ShapeError(f"only a size-1 dimension can be expanded over the batch, but {t} has "
                             f"{t.shape[0]} there", hint="give the tensor a leading 1: Parameter(1, ...)")
        out = []
        for have, want in zip(t.shape[1:], self.sizes):
            if want == -1 or want == have:
                out.append(have)
            elif have == 1 and want > 0:
                out.append(want)
            else:
                raise ShapeError(f"cannot expand size {have} of {t} to {want}: only size-1 dimensions "
                                 "grow, and -1 keeps one", arg="sizes")
        return [TensorType(shape=tuple(out), dtype=t.dtype)]

    def forward_expr(self, module, ins):
        return f"{ins[0]}.expand({ins[1]}.size(0), {', '.join(map(str, self.sizes))})"
