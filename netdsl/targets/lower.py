"""Lowering: a shaped graph -> class definitions (submodules, forward statements).

This is the one form that both the live module (targets/module.py) and the generated source
(targets/pysource.py, `netdsl compile`) are made from, so they agree by construction.
Each block becomes its own class; instances of one block whose code comes out identical share
a class (`Basic`), and the others are numbered (`Basic_2`) with their arguments in the docstring.
"""

from __future__ import annotations

import builtins
import keyword
from dataclasses import dataclass, field
from typing import Any

from ..ir.graph import Graph, Node, Ref

RESERVED = frozenset(keyword.kwlist) | frozenset(dir(builtins)) | {"self", "torch", "nn", "F", "math"}

INIT_FNS = {
    "xavier_uniform": "nn.init.xavier_uniform_", "xavier_normal": "nn.init.xavier_normal_",
    "kaiming_uniform": "nn.init.kaiming_uniform_", "kaiming_normal": "nn.init.kaiming_normal_",
    "orthogonal": "nn.init.orthogonal_", "normal": "nn.init.normal_", "uniform": "nn.init.uniform_",
    "zeros": "nn.init.zeros_", "ones": "nn.init.ones_", "trunc_normal": "nn.init.trunc_normal_",
}


@dataclass
class Submodule:
    attr: str
    ctor: str  # "nn.Conv2d", or the class name of a block
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)  # init and freezing statements after it


@dataclass
class Line:
    code: str
    comment: str = ""


@dataclass
class ClassDef:
    name: str
    doc: str
    inputs: list[str]
    submodules: list[Submodule]
    body: list[Line]
    returns: list[str]
    imports: set[str] = field(default_factory=set)

    def key(self):
        """Everything but the name and docstring: equal keys mean the same code."""
        return (tuple(self.inputs), tuple(repr(s) for s in self.submodules),
                tuple((ln.code, ln.comment) for ln in self.body), tuple(self.returns))


class Namespace:
    """Unique, legal variable names (after torch.fx's `_Namespace`): clashes get `_1`, `_2`."""

    def __init__(self, reserved=RESERVED):
        self.used: set[str] = set()
        self.reserved = reserved

    def create(self, want: str) -> str:
        base = want if want.isidentifier() else "x"
        name, i = base, 0
        while name in self.used or name in self.reserved:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name


class Lowering:
    """Lowers one model and the block instances inside it."""

    def __init__(self, source_name: str = ""):
        self.classes: list[ClassDef] = []
        self.by_key: dict[Any, ClassDef] = {}
        self.count: dict[str, int] = {}
        self.source_name = source_name

    def model(self, graph: Graph) -> list[ClassDef]:
        self._lower(graph, graph.name, f"The model {graph.name}" +
                    (f", from {self.source_name}." if self.source_name else "."))
        return self.classes

    def _lower(self, graph: Graph, name: str, doc: str) -> ClassDef:
        ns = Namespace()
        users = graph.consumers()
        last_use: dict[Ref, int] = {r: max(ix) for r, ix in users.items()}
        outputs = {o.ref for o in graph.outputs}
        var: dict[Ref, str] = {}
        wanted: dict[str, str] = {}  # variable -> the name it was created for
        for n in graph.inputs:
            var[n.out()] = ns.create(n.name)
            wanted[var[n.out()]] = n.name
        subs: list[Submodule] = []
        body: list[Line] = []
        imports: set[str] = {"from torch import nn"}
        for i, node in enumerate(graph.nodes):
            if node.kind == "input":
                continue
            ins = [var[r] for r in node.inputs]
            outs: list[str | None] = []
            for j in range(node.n_outputs):
                ref = node.out(j)
                if ref not in users and ref not in outputs:
                    outs.append(None)
                    continue
                bound = node.bound[j] if j < len(node.bound) else None
                dying = j == 0 and node.inputs and last_use.get(node.inputs[0]) == i \
                    and node.inputs[0] not in outputs and node.inputs.count(node.inputs[0]) == 1
                if dying and (not bound or wanted.get(var[node.inputs[0]]) == bound):
                    v = var[node.inputs[0]]  # the input dies here: reuse its name, as people do
                else:
                    v = ns.create(bound or node.hint or "x")
                    wanted[v] = bound or node.hint or "x"
                var[ref] = v
                outs.append(v)
            comment = node.types[0].batched() if node.types else ""
            if node.kind == "block":
                cls = self._block_class(node)
                subs.append(Submodule(node.name, cls.name))
                lhs = ", ".join(o or "_" for o in outs)
                body.append(Line(f"{lhs} = self.{node.name}({', '.join(ins)})", comment))
                continue
            op = node.op
            module = None
            if op.torch is not None:
                args, kwargs = op.ctor_args()
                subs.append(Submodule(node.name, op.torch, list(args), dict(kwargs), _setup(node)))
                module = f"self.{node.name}"
                imports.update(op.imports)
            lines = op.forward_lines(module, ins, outs)
            if any("torch." in ln for ln in lines):
                imports.add("import torch")
            for k, ln in enumerate(lines):
                body.append(Line(ln, comment if k == 0 else ""))
        returns = [var[o.ref] for o in graph.outputs]
        cls = ClassDef(name, doc, [var[n.out()] for n in graph.inputs], subs, body, returns, imports)
        self.classes.append(cls)
        return cls

    def _block_class(self, node: Node) -> ClassDef:
        args = ", ".join(f"{k}={v!r}" for k, v in node.block_args.items())
        ins = ", ".join(str(node.graph.inputs[k].types[0]) if node.graph.inputs[k].types else "?"
                        for k in range(len(node.graph.inputs)))
        doc = f"Block {node.block}({args}) on input {ins}."
        probe = Lowering(self.source_name)
        probe.by_key, probe.count, probe.classes = self.by_key, self.count, []
        cls = probe._lower(node.graph, node.block, doc)
        nested = probe.classes[:-1]
        self.classes.extend(c for c in nested if c not in self.classes)
        key = (node.block, cls.key())
        if key in self.by_key:
            return self.by_key[key]
        k = self.count.get(node.block, 0) + 1
        self.count[node.block] = k
        cls.name = node.block if k == 1 else f"{node.block}_{k}"
        self.by_key[key] = cls
        self.classes.append(cls)
        return cls


def _setup(node: Node) -> list[str]:
    op, attr, out = node.op, f"self.{node.name}", []
    init, bias_init = getattr(op, "init", None), getattr(op, "bias_init", None)
    if init or bias_init:
        if op.family in ("linear", "conv", "embedding", "norm"):
            if init:
                out.append(f"{INIT_FNS[init]}({attr}.weight)")
            if bias_init and getattr(op, "bias", True) is not False and op.kind != "Embedding":
                out.append(f"{INIT_FNS[bias_init]}({attr}.bias)")
        else:
            out.append(f"for name, p in {attr}.named_parameters():")
            if init:
                out.append(f"    if name.startswith(\"weight\"):\n            {INIT_FNS[init]}(p)")
            if bias_init:
                out.append(f"    if name.startswith(\"bias\"):\n            {INIT_FNS[bias_init]}(p)")
    if getattr(op, "trainable", True) is False:
        out.append(f"{attr}.requires_grad_(False)")
    return out


def lower_model(graph: Graph, source_name: str = "") -> list[ClassDef]:
    """The classes for one model: blocks first, the model's own class last."""
    return Lowering(source_name).model(graph)
