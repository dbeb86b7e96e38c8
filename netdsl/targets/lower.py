"""Lowering: shaped model graphs -> class definitions (`ClassDef`), the one form that both the
live module (targets/module.py) and `netdsl compile` (targets/compile.py) print as Python.

A model becomes one class. A block becomes one class for all of its instances, as a person
would write it (see targets/blockclass.py): the numbers that differ between instances become
`__init__` parameters (`Basic(64, 128, stride=2)`), and a layer that only some instances have
sits under an `if` on the spec's own condition. The steps:

1. every graph (models and block instances) is read into a `Program`: its nodes as `Member`s,
   each with its constructor arguments split into `Slot`s (the argument) and values (this
   instance's numbers), so that instances can be compared and generalised;
2. blockclass.py turns the programs of one block into `Plan`s, innermost blocks first, since a
   block's arguments to an inner block are part of its own code;
3. emit.py writes each plan as a `ClassDef`: `__init__` statements, `forward` statements with
   variable names and shape comments.

Only validated identifiers and literals (through `literal()` in pysource.py) reach the code.
"""

from __future__ import annotations

import builtins
import keyword
import sys
from dataclasses import dataclass, field
from typing import Any

from ..ir.graph import Graph, Node
from ..ops.base import Op

# Names generated code never binds: keywords, builtins (a class or variable called `float`
# would break `float("nan")`), and the module-level names the code itself uses.
RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {
    "self", "torch", "nn", "F", "math", "torchvision", "_", "__class__",
}


def class_reserved() -> frozenset:
    """What a model or block class may not be called in generated code: RESERVED, every
    standard-library module (a compiled script imports some, `class time` would hide
    `time.perf_counter`), and every name the training script defines (targets/trainscript.py).
    The live module uses the same set, so its classes are named as in `netdsl compile`."""
    from .trainscript import script_names  # lazily: trainscript imports this module

    return RESERVED | frozenset(sys.stdlib_module_names) | script_names()

INIT_FNS = {
    "xavier_uniform": "nn.init.xavier_uniform_", "xavier_normal": "nn.init.xavier_normal_",
    "kaiming_uniform": "nn.init.kaiming_uniform_", "kaiming_normal": "nn.init.kaiming_normal_",
    "orthogonal": "nn.init.orthogonal_", "normal": "nn.init.normal_", "uniform": "nn.init.uniform_",
    "zeros": "nn.init.zeros_", "ones": "nn.init.ones_", "trunc_normal": "nn.init.trunc_normal_",
}


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()


@dataclass(frozen=True)
class Code:
    """Python source made by netdsl from validated names and literals (`c * 4`, `in_channels`);
    `literal()` passes it through unchanged."""

    text: str


# ---- what the printer reads ----------------------------------------------------------------
@dataclass
class Stmt:
    """One statement; a compound one (`if stride != 1:`) has a body."""

    code: str
    comment: str = ""
    body: list[Stmt] | None = None


@dataclass
class ClassDef:
    name: str
    doc: list[str]  # a summary, then details (see pysource.class_doc)
    params: list[tuple[str, Any]]  # __init__ parameters: (name, default or NO_DEFAULT)
    init: list[Stmt]  # after `super().__init__()`
    inputs: list[str]  # forward's parameters
    body: list[Stmt]  # forward, ending with its return
    imports: set[str] = field(default_factory=set)
    model: str | None = None  # the spec's name of the model this class is (None for a block)


class Namespace:
    """Unique, legal names (after torch.fx's `_Namespace`). A reserved word gets a trailing
    underscore (`class_`, `print_`), as PEP 8 suggests; a clash gets `_1`, `_2`."""

    def __init__(self, reserved=RESERVED):
        self.used: set[str] = set()
        self.reserved = reserved

    def legal(self, want: str) -> str:
        """`want` made a legal name that reads as itself (unique or not): `want` when it is one."""
        base = want if want.isidentifier() and want.isascii() else "x"
        if base.startswith("__") and base.endswith("__") and base.strip("_"):
            base = base.strip("_")  # a dunder (`__class__`) is Python's own: `class_`
        elif base.startswith("__"):
            base = "_" + base.lstrip("_")  # no name mangling inside a class
        if base in self.reserved or keyword.issoftkeyword(base):
            base += "_"
        return base

    def create(self, want: str) -> str:
        base = self.legal(want)
        name, i = base, 0
        while name in self.used or name in self.reserved:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


# ---- programs: a graph read for generalisation ------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """One constructor argument: positional (`key` an index) or a keyword. `default` is torch's
    (NO_DEFAULT: always written); `field` names a parameter lifted from it."""

    key: int | str
    field: str
    default: Any = NO_DEFAULT
    inferred: bool = False
    expr: Any = field(default=None, compare=False)  # the spec's expression (ast), in a block


@dataclass
class Member:
    """One non-input node of a program."""

    node: Node
    ctor: str | None  # "nn.Conv2d", a block class name, or None (no submodule: `a + b`)
    slots: list[Slot]
    values: list[Any]  # this instance's value for each slot
    setup: list[Stmt]  # init and freezing statements after the constructor
    template: tuple  # the forward code with placeholder names: equal templates, equal code
    imports: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def sig(self) -> tuple:
        """Everything about this member but its numbers and its inputs."""
        return (self.node.name, self.node.kind, self.ctor, tuple(self.slots),
                tuple((s.code, s.body is None) for s in self.setup), self.template,
                self.node.n_outputs)


@dataclass
class Program:
    """A model, or one instance of a block: its members in order."""

    graph: Graph
    env: dict[str, Any]  # the block's arguments for this instance ({} for a model)
    members: list[Member]
    node: Node | None = None  # the block node this instance is (None for a model)

    @property
    def key(self) -> tuple:
        """Equal keys: the same code up to constructor numbers."""
        return (tuple(n.name for n in self.graph.inputs),
                tuple((m.sig, tuple((r.node, r.index) for r in m.node.inputs)) for m in self.members),
                tuple((o.ref.node, o.ref.index) for o in self.graph.outputs))


def op_slots(op: Op) -> tuple[list[Slot], list[Any]]:
    """An op's constructor arguments as slots and values. For an op that keeps the declaration
    contract (fields are torch's parameters, torch's defaults) every field is a slot, so that
    instances that differ only in a default-valued argument still compare equal."""
    cls = type(op)
    args, kwargs = op.ctor_args()
    slots: list[Slot] = []
    values: list[Any] = []
    if cls.ctor_args is Op.ctor_args:
        extra = set(cls.extra_fields())
        names = [n for n in cls.model_fields if n != "op" and n not in extra]
        inferred = set(cls.inferred_fields())
        for i, v in enumerate(args):
            slots.append(Slot(i, names[i], inferred=names[i] in inferred))
            values.append(v)
        for n in names[len(args):]:
            slots.append(Slot(n, n, cls.model_fields[n].default, inferred=n in inferred))
            values.append(getattr(op, n))
        for n, v in cls.fixed.items():
            slots.append(Slot(n, n))
            values.append(v)
    else:  # an op with its own ctor_args (its values are not its fields): taken as given
        fields = cls.spec_fields()
        for i, v in enumerate(args):
            slots.append(Slot(i, fields[i] if i < len(fields) else f"arg{i}"))
            values.append(v)
        for n, v in kwargs.items():
            slots.append(Slot(n, n))
            values.append(v)
    return slots, values


def setup_statements(node: Node) -> list[Stmt]:
    """`init=`, `bias_init=` and `trainable=false` as statements after the constructor. (Only
    netdsl's own `init=` names an init function: PReLU's `init` is torch's starting slope.)"""
    op, attr, out = node.op, f"self.{node.name}", []
    own = op.setup_lines(node.name)
    if own is not None:  # a Parameter's fill
        out = [Stmt(line) for line in own]
        if getattr(op, "trainable", True) is False:
            out.append(Stmt(f"{attr}.requires_grad_(False)"))
        return out
    extra = type(op).extra_fields()
    if "weight" in extra and op.weight:  # tied: the owner's tensor, built before this layer
        out.append(Stmt(f"{attr}.weight = self.{op.weight}"))
    init = op.init if "init" in extra else None
    bias_init = op.bias_init if "bias_init" in extra else None
    if init or bias_init:
        if op.family in ("linear", "conv", "embedding", "norm"):
            if init:
                out.append(Stmt(f"{INIT_FNS[init]}({attr}.weight)"))
                if op.kind == "Embedding" and op.padding_idx is not None:
                    # torch's own initialisation leaves the padding row zero; so does init=
                    out.append(Stmt(f"nn.init.zeros_({attr}.weight[{op.padding_idx}])"))
            if bias_init and getattr(op, "bias", True) is not False and op.kind != "Embedding":
                out.append(Stmt(f"{INIT_FNS[bias_init]}({attr}.bias)"))
        else:  # recurrent and attention layers: every weight and bias tensor
            body = []
            if init:
                body.append(Stmt('if name.startswith("weight"):', body=[Stmt(f"{INIT_FNS[init]}(p)")]))
            if bias_init:
                body.append(Stmt('if name.startswith("bias"):', body=[Stmt(f"{INIT_FNS[bias_init]}(p)")]))
            out.append(Stmt(f"for name, p in {attr}.named_parameters():", body=body))
    if getattr(op, "trainable", True) is False:
        out.append(Stmt(f"{attr}.requires_grad_(False)"))
    return out


def placeholder_template(node: Node, used: list[bool]) -> tuple:
    """The forward code of an op node with placeholder names for its inputs and outputs."""
    op = node.op
    module = f"self.{node.shares or node.name}" if op.torch is not None else None
    ins = [f"\x00in{k}" for k in range(len(node.inputs))]
    outs = [f"\x00out{j}" if u else None for j, u in enumerate(used)]
    return tuple(op.forward_lines(module, ins, outs))


def lower_models(graphs: list[Graph]) -> list:
    """The classes for several models: every block once, before the classes that use it;
    each model's class after its blocks."""
    from .blockclass import Lowering

    return Lowering(graphs).run()


def lower_model(graph: Graph, source_name: str = "") -> list:
    """The classes for one model: blocks first, the model's own class last. (`source_name` is
    accepted for callers that pass it; the classes do not name their spec.)"""
    return lower_models([graph])
