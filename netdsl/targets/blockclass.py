"""One class per block, written as a person would write it, for every instance at once.

ResNet-18 uses `Basic` eight times with different channels and strides. Rather than eight
classes with different numbers, it gets one:

    class Basic(nn.Module):
        def __init__(self, in_channels, c, stride=1):
            ...
            self.conv1 = nn.Conv2d(in_channels, c, 3, stride=stride, padding=1, bias=False)
            ...
            if stride != 1:
                self.conv3 = nn.Conv2d(in_channels, c, 1, stride=stride, bias=False)
                self.bn3 = nn.BatchNorm2d(c)

        def forward(self, x):
            ...
            if hasattr(self, "conv3"):  # the layer only one branch has (TorchScript decides
                s = self.conv3(x)       # this when it compiles, and compiles one branch)
                s = self.bn3(s)
            else:
                s = x

How, for the instances (`Program`s) of one block:

1. Group them by structure (`Program.key`: everything but constructor numbers).
2. Two groups may become one class with an `if`, when a conditional of the block's own body
   (`... if stride != 1 else x`) is true for every instance of one group and false for every
   instance of the other, and the two structures align: the same layers in the same order
   apart from the ones under the condition. A value that comes from one layer or the other
   becomes a variable assigned in both branches (`s`). Otherwise each group keeps its own
   class (`Basic`, `Basic_2`).
3. Every constructor argument then gets one expression valid for all the instances of its
   class, tried in this order, each checked against every instance's actual value:
   - the spec's own expression for it (`c * 4`, `stride`), when it uses the block's parameters;
   - the same number in every instance: that literal;
   - a parameter, or an expression already used, with the same value in every instance
     (`c` for the second convolution's inferred input channels);
   - otherwise a new parameter named after the argument (`in_channels`).
   So the class computes, for each instance, exactly the module the spec describes there;
   the parity tests run every spec both ways.

This module runs the steps for every block, innermost first; plans.py holds steps 1 and 2,
parametrise.py step 3, specexpr.py the spec's expressions, emit.py the statements.
"""

from __future__ import annotations

from ..ir.graph import Graph, Node
from ..ops.base import Op
from ..syntax import ast
from .lower import (
    NO_DEFAULT,
    RESERVED,
    ClassDef,
    Member,
    Namespace,
    Program,
    Slot,
    class_reserved,
    op_slots,
    placeholder_template,
    setup_statements,
)
from .emit import emit
from .parametrise import parametrise
from .plans import BlockCall, NoMerge, Plan, merge, single
from .pysource import literal
from .specexpr import block_def, call_exprs, expr_index, literal_default, span_key


# ---- the whole lowering ------------------------------------------------------------------------
class Lowering:
    """Lowers models and every block instance in them, innermost blocks first."""

    def __init__(self, graphs: list[Graph]):
        self.graphs = graphs
        self.calls: dict[int, BlockCall] = {}
        self.instances: dict[str, list[Node]] = {}
        self.deps: dict[str, set[str]] = {}
        for g in graphs:
            self._collect(g)
        # One namespace for class names (spec names that Python or the script would read
        # otherwise are renamed: `time` -> `time_`); the spec's own names are taken first, so
        # a rename never takes another spec name.
        spec_names = [g.name for g in graphs] + [b for b in self.instances if b not in
                                                 {g.name for g in graphs}]
        self.class_names = Namespace(class_reserved())
        self.class_names.used |= {n for n in spec_names if self._safe(n)}
        self.py: dict[str, str] = {n: n if self._safe(n) else self.class_names.create(n)
                                   for n in spec_names}
        self.classes: dict[str, list[ClassDef]] = {}

    @property
    def reserved(self) -> frozenset:
        """What values and parameters may not be called: Python's names and every class."""
        return RESERVED | self.class_names.used

    def _safe(self, name: str) -> bool:
        return self.class_names.legal(name) == name

    def _collect(self, graph: Graph) -> None:
        for n in graph.nodes:
            if n.kind == "block":
                self.instances.setdefault(n.block, []).append(n)
                self.deps.setdefault(n.block, set())
                self._collect(n.graph)
                if graph.kind == "block":
                    self.deps.setdefault(graph.name, set()).add(n.block)

    def run(self) -> list[ClassDef]:
        done: set[str] = set()

        def visit(name: str) -> None:
            if name in done:
                return
            done.add(name)
            for d in sorted(self.deps.get(name, ())):
                visit(d)
            self._block(name)

        for name in self.instances:
            visit(name)
        out: list[ClassDef] = []
        emitted: set[str] = set()
        for g in self.graphs:
            self._emit_used(g, out, emitted)
            prog = self._program(g, {}, None)
            plan = single([prog])
            plan.name = self.py[g.name]
            plan.doc = _model_doc(g)
            parametrise(plan, self.reserved)
            out.append(emit(plan, self.reserved))
            out[-1].model = g.name
        return out

    def _emit_used(self, graph: Graph, out: list, emitted: set[str]) -> None:
        for n in graph.nodes:
            if n.kind == "block":
                self._emit_used(n.graph, out, emitted)
                for c in self.classes[n.block]:
                    if c.name == self.calls[id(n)].cls and c.name not in emitted:
                        emitted.add(c.name)
                        out.append(c)

    def _block(self, name: str) -> None:
        nodes = self.instances[name]
        bdef = block_def(nodes[0].graph)
        programs = [self._program(n.graph, dict(n.block_args), bdef, n) for n in nodes]
        groups: dict[tuple, list[Program]] = {}
        for p in programs:
            groups.setdefault(p.key, []).append(p)
        plans: list[Plan] = []
        if len(groups) == 2 and bdef is not None:
            a, b = groups.values()
            try:
                plan = merge(a, b, bdef)
                plan.name = self.py[name]
                parametrise(plan, self.reserved)
                plans = [plan]
            except NoMerge:
                plans = []
        if not plans:
            for k, g in enumerate(groups.values()):
                plan = single(g, bdef)
                plan.name = self.py[name] if k == 0 else self._variant_name(self.py[name])
                parametrise(plan, self.reserved)
                plans.append(plan)
        self.classes[name] = []
        for k, plan in enumerate(plans):
            plan.doc = _block_doc(name, bdef, k, len(plans), plan)
            for i, prog in enumerate(plan.programs):
                self.calls[id(prog.node)] = BlockCall(plan.name, plan.params, plan.call_values[i])
            self.classes[name].append(emit(plan, self.reserved))

    def _variant_name(self, name: str) -> str:
        k = 2
        while f"{name}_{k}" in self.class_names.used or f"{name}_{k}" in self.class_names.reserved:
            k += 1
        self.class_names.used.add(f"{name}_{k}")
        return f"{name}_{k}"

    def _program(self, graph: Graph, env: dict, bdef: ast.BlockDef | None, node: Node | None = None) -> Program:
        users = graph.consumers()
        outputs = {o.ref for o in graph.outputs}
        index = expr_index(bdef) if bdef is not None else {}
        members: list[Member] = []
        for n in graph.nodes:
            if n.kind == "input":
                continue
            used = [n.out(j) in users or n.out(j) in outputs for j in range(n.n_outputs)]
            if n.shares is not None:  # a declared layer applied again: its module, no new one
                template = placeholder_template(n, used) if n.kind == "op" else ("block", tuple(used))
                members.append(Member(n, None, [], [], [], ("shares", n.shares, template)))
                continue
            if n.kind == "block":
                call = self.calls[id(n)]
                exprs = call_exprs(n, bdef, index) if bdef is not None else {}
                slots = []
                k = 0
                for p in call.params:
                    key: int | str = p.py
                    if p.default is NO_DEFAULT:
                        key, k = k, k + 1
                    slots.append(Slot(key, p.py, p.default, expr=exprs.get(p.spec)))
                members.append(Member(n, call.cls, slots, list(call.values), [], ("block", tuple(used))))
                continue
            op = n.op
            slots, values = op_slots(op) if op.torch is not None else ([], [])
            if index and type(op).ctor_args is Op.ctor_args:
                slots = [_with_expr(s, n, index) for s in slots]
            members.append(Member(n, op.constructor(), slots, values,
                                  setup_statements(n) if op.torch is not None else [],
                                  placeholder_template(n, used), tuple(op.imports)))
        return Program(graph, env, members, node)


def _with_expr(s: Slot, n: Node, index: dict) -> Slot:
    span = n.arg_spans.get(s.field)
    e = index.get(span_key(span)) if span is not None else None
    if e is None:
        return s
    return Slot(s.key, s.field, s.default, s.inferred, e)


# ---- docstrings ---------------------------------------------------------------------------------
def _model_doc(g: Graph) -> list[str]:
    def one(name, t):
        return f"{name} {t.batched()}" + ("" if t.dtype == "float32" else f" {t.dtype}")

    ins = ", ".join(one(n.name, n.types[0]) for n in g.inputs if n.types)
    outs = ", ".join(one(o.name, g.type_of(o.ref)) for o in g.outputs if g.type_of(o.ref))
    sizes = [f"Takes every size with {', '.join(d.describe() for d in g.dims)}."] if g.dims else []
    return [f"Model {g.name}", f"{ins} -> {outs}", *sizes]


def _block_doc(name: str, bdef: ast.BlockDef | None, k: int, n: int, plan: Plan) -> list[str]:
    sig = ""
    if bdef is not None:
        parts = []
        for p in bdef.params:
            d = literal_default(p)
            parts.append(p.name if d is NO_DEFAULT else f"{p.name}={literal(d)}")
        sig = ", ".join(parts)
    doc = f"Block {name}({sig})" + (f", structure {k + 1} of {n} (its instances differ in layers)"
                                    if n > 1 else "")
    ins = [f"{n.name} {plan.comments[(None, i)]}" for i, n in enumerate(plan.programs[0].graph.inputs)
           if (None, i) in plan.comments]
    outs = [plan.comments[r] for r in plan.outputs if r in plan.comments]
    if ins and len(outs) == len(plan.outputs):
        return [doc, f"{', '.join(ins)} -> {', '.join(outs)}"]
    return [doc]
