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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..ir.graph import Graph, Node
from ..ir.types import TensorType
from ..ops.base import Op
from ..passes.names import statement_exprs, walk
from ..passes.scalars import EvalError, Symbol, evaluate
from ..source import Span
from ..syntax import ast, parse
from .lower import (
    NO_DEFAULT,
    RESERVED,
    ClassDef,
    Code,
    Member,
    Namespace,
    Program,
    Slot,
    op_slots,
    placeholder_template,
    setup_statements,
)
from .pysource import literal

MAX_EXPR = 40  # longer spec expressions are written as the values they take


@dataclass
class ClassParam:
    py: str  # the name in the generated code
    spec: str | None  # the block parameter it is (None: a lifted argument)
    default: Any = NO_DEFAULT


@dataclass
class BlockCall:
    """How a block instance is constructed: `cls(*values)` by `params`."""

    cls: str
    params: list[ClassParam]
    values: list[Any]


@dataclass
class Item:
    """One member of a class: a layer (or block) present in `members`' instances, under `guard`
    (None: always; True/False: when the condition is), or a `phi` value: inputs[0] where the
    condition holds, inputs[1] where it does not."""

    id: str
    guard: bool | None
    members: dict[int, Member]
    inputs: list[tuple]
    phi: bool = False

    @property
    def first(self) -> Member:
        return self.members[min(self.members)]


@dataclass
class Plan:
    """The code of one class, before names are given to values (see emit.py)."""

    programs: list[Program]
    items: list[Item]
    outputs: list[tuple]
    block: ast.BlockDef | None = None
    cond: ast.Expr | None = None
    name: str = ""
    doc: list[str] = field(default_factory=list)  # a summary, then details
    params: list[ClassParam] = field(default_factory=list)
    ctor: dict[str, tuple[list, list]] = field(default_factory=dict)  # id -> (args, kwargs)
    call_values: list[list] = field(default_factory=list)  # per program, per param
    cond_init: str = ""  # the condition in __init__ (`stride != 1`) and its negation
    cond_init_not: str = ""
    witness: tuple[str, bool] | None = None  # a layer only one branch has, and which one
    comments: dict[tuple, str] = field(default_factory=dict)  # (item id, output) -> shape


class _NoMerge(Exception):
    """Two structures cannot share a class after all."""


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
        names = {g.name for g in graphs} | set(self.instances)
        self.class_names = Namespace(RESERVED)
        self.class_names.used |= names
        self.reserved = RESERVED | names
        self.classes: dict[str, list[ClassDef]] = {}

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
            plan.name = g.name
            plan.doc = _model_doc(g)
            parametrise(plan, self.reserved)
            out.append(_emit(plan, self.reserved))
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
        bdef = _block_def(nodes[0].graph)
        programs = [self._program(n.graph, dict(n.block_args), bdef, n) for n in nodes]
        groups: dict[tuple, list[Program]] = {}
        for p in programs:
            groups.setdefault(p.key, []).append(p)
        plans: list[Plan] = []
        if len(groups) == 2 and bdef is not None:
            a, b = groups.values()
            try:
                plan = merge(a, b, bdef)
                plan.name = name
                parametrise(plan, self.reserved)
                plans = [plan]
            except _NoMerge:
                plans = []
        if not plans:
            for k, g in enumerate(groups.values()):
                plan = single(g, bdef)
                plan.name = name if k == 0 else self._variant_name(name)
                parametrise(plan, self.reserved)
                plans.append(plan)
        self.classes[name] = []
        for k, plan in enumerate(plans):
            plan.doc = _block_doc(name, bdef, k, len(plans), plan)
            for i, prog in enumerate(plan.programs):
                self.calls[id(prog.node)] = BlockCall(plan.name, plan.params, plan.call_values[i])
            self.classes[name].append(_emit(plan, self.reserved))

    def _variant_name(self, name: str) -> str:
        k = 2
        while f"{name}_{k}" in self.class_names.used:
            k += 1
        self.class_names.used.add(f"{name}_{k}")
        return f"{name}_{k}"

    def _program(self, graph: Graph, env: dict, bdef: ast.BlockDef | None, node: Node | None = None) -> Program:
        users = graph.consumers()
        outputs = {o.ref for o in graph.outputs}
        index = _expr_index(bdef) if bdef is not None else {}
        members: list[Member] = []
        for n in graph.nodes:
            if n.kind == "input":
                continue
            used = [n.out(j) in users or n.out(j) in outputs for j in range(n.n_outputs)]
            if n.kind == "block":
                call = self.calls[id(n)]
                exprs = _call_exprs(n, bdef, index) if bdef is not None else {}
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
            members.append(Member(n, op.torch, slots, values,
                                  setup_statements(n) if op.torch is not None else [],
                                  placeholder_template(n, used), tuple(op.imports)))
        return Program(graph, env, members, node)


def _with_expr(s: Slot, n: Node, index: dict) -> Slot:
    span = n.arg_spans.get(s.field)
    e = index.get(_span_key(span)) if span is not None else None
    if e is None:
        return s
    return Slot(s.key, s.field, s.default, s.inferred, e)


# ---- plans: one structure, or two joined by a condition -------------------------------------------
def single(programs: list[Program], bdef: ast.BlockDef | None = None) -> Plan:
    rep = programs[0]
    items = []
    for k, m in enumerate(rep.members):
        members = {i: p.members[k] for i, p in enumerate(programs)}
        items.append(Item(m.name, None, members, [(r.node, r.index) for r in m.node.inputs]))
    outs = [(o.ref.node, o.ref.index) for o in rep.graph.outputs]
    return Plan(programs, items, outs, bdef)


def merge(group_a: list[Program], group_b: list[Program], bdef: ast.BlockDef) -> Plan:
    """One plan for two structures, guarded by a conditional of the block (raises _NoMerge)."""
    cond, true_group = _condition(bdef, group_a, group_b)
    false_group = group_a if true_group is group_b else group_b
    programs = true_group + false_group
    t_ids = list(range(len(true_group)))
    f_ids = list(range(len(true_group), len(programs)))
    t, f = true_group[0], false_group[0]
    if [n.name for n in t.graph.inputs] != [n.name for n in f.graph.inputs] \
            or len(t.graph.outputs) != len(f.graph.outputs):
        raise _NoMerge
    t_sig = {m.name: m for m in t.members}
    f_sig = {m.name: m for m in f.members}
    matched = {n for n in t_sig if n in f_sig and t_sig[n].sig == f_sig[n].sig}
    if [m.name for m in t.members if m.name in matched] != [m.name for m in f.members if m.name in matched]:
        raise _NoMerge
    inputs = {n.name for n in t.graph.inputs}

    def ident(name: str, side: bool) -> str:
        if name in inputs or name in matched:
            return name
        other = f_sig if side else t_sig
        return f"{name}@{'T' if side else 'F'}" if name in other else name

    # the merged order: each side's own order, the shared members where they both have them
    order: list[tuple[bool | None, str]] = []
    ti = fi = 0
    tm, fm = t.members, f.members
    while ti < len(tm) or fi < len(fm):
        while fi < len(fm) and fm[fi].name not in matched:
            order.append((False, fm[fi].name))
            fi += 1
        while ti < len(tm) and tm[ti].name not in matched:
            order.append((True, tm[ti].name))
            ti += 1
        if ti < len(tm) and fi < len(fm):
            order.append((None, tm[ti].name))
            ti += 1
            fi += 1
    items: list[Item] = []
    phis: dict[tuple, str] = {}

    def phi(rt: tuple, rf: tuple) -> tuple:
        if (rt, rf) not in phis:
            pid = f"@phi{len(phis)}"
            phis[(rt, rf)] = pid
            items.append(Item(pid, None, {}, [rt, rf], phi=True))
        return (phis[(rt, rf)], 0)

    by_name = [{m.name: m for m in p.members} for p in programs]

    for guard, name in order:
        if guard is None:
            mt, mf = t_sig[name], f_sig[name]
            ins = []
            for rt, rf in zip(mt.node.inputs, mf.node.inputs):
                a, b = (ident(rt.node, True), rt.index), (ident(rf.node, False), rf.index)
                ins.append(a if a == b else phi(a, b))
            items.append(Item(name, None, {i: by_name[i][name] for i in t_ids + f_ids}, ins))
        else:
            ids = t_ids if guard else f_ids
            m = by_name[ids[0]][name]
            ins = [(ident(r.node, guard), r.index) for r in m.node.inputs]
            items.append(Item(ident(name, guard), guard, {i: by_name[i][name] for i in ids}, ins))
    # forward tells the branches apart by a layer only one of them has: `hasattr(self, "conv3")`
    attrs_of = {side: {it.first.name for it in items if not it.phi and it.guard is side}
                for side in (True, False)}
    witness = next(((it.first.name, it.guard) for it in items if it.guard is not None
                    and it.first.ctor is not None and it.first.name not in attrs_of[not it.guard]), None)
    if witness is None:
        raise _NoMerge
    outs = []
    for ot, of in zip(t.graph.outputs, f.graph.outputs):
        a, b = (ident(ot.ref.node, True), ot.ref.index), (ident(of.ref.node, False), of.ref.index)
        outs.append(a if a == b else phi(a, b))
    return Plan(programs, items, outs, bdef, cond, witness=witness)


def _condition(bdef: ast.BlockDef, a: list[Program], b: list[Program]):
    """A conditional of the block's body (not one inside a layer's arguments) that is true for
    every instance of one group and false for every instance of the other."""
    for test in _structural_tests(bdef):
        try:
            va = [evaluate(test, p.env) for p in a]
            vb = [evaluate(test, p.env) for p in b]
        except EvalError:
            continue
        if not all(isinstance(v, bool) for v in va + vb):
            continue
        if all(va) and not any(vb):
            return test, a
        if all(vb) and not any(va):
            return test, b
    raise _NoMerge


def _structural_tests(bdef: ast.BlockDef):
    def visit(e):
        if isinstance(e, ast.Conditional):
            yield e.test
            yield from visit(e.then)
            yield from visit(e.other)
        elif isinstance(e, ast.Chain):  # the head; a step is a layer, its arguments numbers
            yield from visit(e.head)
        elif isinstance(e, ast.BinOp):
            yield from visit(e.left)
            yield from visit(e.right)
        elif isinstance(e, ast.TupleExpr):
            for x in e.items:
                yield from visit(x)
        elif isinstance(e, ast.Call):  # a layer applied to values (`ReLU(y + s)`)
            for x in e.args:
                yield from visit(x)

    for stmt in bdef.body:
        for e in statement_exprs(stmt):
            yield from visit(e)


# ---- constructor arguments for every instance at once ----------------------------------------
@dataclass
class _Candidate:
    code: str
    values: dict[int, Any]  # instance -> value
    params: tuple[str, ...]  # the block parameters it uses


def parametrise(plan: Plan, reserved: frozenset) -> None:
    """Fill in plan.params, plan.ctor, plan.call_values, the condition and the comments."""
    progs = plan.programs
    envs = [p.env for p in progs]
    everyone = list(range(len(progs)))
    ns = Namespace(reserved)
    bparams = plan.block.params if plan.block is not None else []
    py = {p.name: ns.create(p.name) for p in bparams}
    used: set[str] = set()
    cands: list[_Candidate] = [
        _Candidate(py[p.name], {i: envs[i][p.name] for i in everyone}, (p.name,))
        for p in bparams if all(p.name in env for env in envs)
    ]
    lifted: list[tuple[ClassParam, dict[int, Any]]] = []

    def resolve(item: Item, s: int, slot: Slot):
        insts = sorted(item.members)
        vec = {i: item.members[i].values[s] for i in insts}
        if slot.expr is not None:
            got = _spec_expression(slot.expr, py, envs, vec)
            if got is not None:
                text, refs = got
                used.update(refs)
                cands.append(_Candidate(text, {i: _eval(slot.expr, envs[i]) for i in everyone}, refs))
                return Code(text)
        if len({_same_key(v) for v in vec.values()}) == 1:
            return vec[insts[0]]
        for c in cands:
            if all(i in c.values and _same(c.values[i], vec[i]) for i in insts):
                used.update(c.params)
                return Code(c.code)
        for p, values in lifted:
            if all(_same(values[i], vec[i]) for i in insts):
                return Code(p.py)
        if insts != everyone:
            raise _NoMerge  # a new parameter no instance outside this branch could be given
        p = ClassParam(ns.create(slot.field if slot.field not in ns.used else f"{item.id}_{slot.field}"), None)
        lifted.append((p, vec))
        return Code(p.py)

    # members every instance has come first, so that a guarded one can reuse their parameters
    ordered = [it for it in plan.items if not it.phi and len(it.members) == len(progs)] + \
              [it for it in plan.items if not it.phi and len(it.members) != len(progs)]
    for item in ordered:
        m = item.first
        if m.ctor is None:
            continue
        args, kwargs = [], []
        for s, slot in enumerate(m.slots):
            code = resolve(item, s, slot)
            if isinstance(slot.key, int):
                args.append(code)
            elif isinstance(code, Code) or slot.default is NO_DEFAULT \
                    or any(not _same(mm.values[s], slot.default) for mm in item.members.values()):
                kwargs.append((slot.key, code))
        plan.ctor[item.id] = (args, kwargs)
    if plan.cond is not None:
        used.update(_names(plan.cond))
        plan.cond_init, plan.cond_init_not = _py(plan.cond, py), _py(_negate(plan.cond), py)
        if max(len(plan.cond_init), len(plan.cond_init_not)) > 70:
            raise _NoMerge  # (a longer condition would need a split `if (...):`)
    # the signature: lifted arguments, then the block's parameters (required before defaulted)
    params = [p for p, _ in lifted]
    spec_params = [ClassParam(py[p.name], p.name, _default(p)) for p in bparams if p.name in used]
    params += [p for p in spec_params if p.default is NO_DEFAULT]
    params += [p for p in spec_params if p.default is not NO_DEFAULT]
    plan.params = params
    values_of = {p.py: v for p, v in lifted}
    plan.call_values = [[values_of[p.py][i] if p.spec is None else envs[i][p.spec] for p in params]
                        for i in everyone]
    plan.comments = _comments(plan, cands + [_Candidate(p.py, v, ()) for p, v in lifted])


def _negate(e: ast.Expr) -> ast.Expr:
    if isinstance(e, ast.Compare) and e.op in ("==", "!="):
        return ast.Compare(e.span, "!=" if e.op == "==" else "==", e.left, e.right)
    if isinstance(e, ast.Not):
        return e.operand
    return ast.Not(e.span, e)


def _spec_expression(e: ast.Expr, py: dict[str, str], envs: list[dict], vec: dict[int, Any]):
    """The spec's expression as Python, when it uses block parameters and gives each
    instance's actual value; else None."""
    refs = _names(e)
    if not refs or not refs <= set(py):
        return None
    for i, v in vec.items():
        got = _eval(e, envs[i])
        if got is _FAIL or not _same(got, v):
            return None
    text = _py(e, py)
    if text is None or len(text) > MAX_EXPR:
        return None
    return text, tuple(sorted(refs))


_FAIL = object()


def _eval(e: ast.Expr, env: dict):
    try:
        v = evaluate(e, env)
    except EvalError:
        return _FAIL
    return _FAIL if _has_symbol(v) else v


def _has_symbol(v) -> bool:
    if isinstance(v, Symbol):
        return True
    return isinstance(v, tuple) and any(_has_symbol(x) for x in v)


def _same_key(v):
    try:
        return type(v).__name__, literal(v)
    except TypeError:
        return type(v).__name__, repr(v)


def _same(a, b) -> bool:
    """Equal as code: `1` is not `1.0` nor `True`."""
    return _same_key(a) == _same_key(b)


def _names(e) -> set[str]:
    return {x.id for x in walk(e) if isinstance(x, ast.Name)}


def _default(p: ast.Param):
    if p.default is None:
        return NO_DEFAULT
    v = _eval(p.default, {})
    if v is _FAIL:
        return NO_DEFAULT
    try:
        literal(v)
    except TypeError:
        return NO_DEFAULT
    return v


# ---- spec expressions as Python ------------------------------------------------------------------
_LEVEL = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 6, "-": 6, "*": 7, "/": 7, "//": 7, "%": 7,
          "neg": 8, "**": 9}


def _py(e, names: dict[str, str]) -> str | None:
    got = _py_level(e, names)
    return got[0] if got else None


def _py_level(e, names) -> tuple[str, int] | None:
    """(Python text, precedence level) of a scalar expression; None for anything else."""
    if isinstance(e, ast.Num | ast.Str | ast.Const):
        text = literal(e.value)
        return text, 10 if not text.startswith("-") else 8
    if isinstance(e, ast.Name):
        return (names[e.id], 10) if e.id in names else None
    if isinstance(e, ast.TupleExpr | ast.ListExpr):
        parts = [_py(x, names) for x in e.items]
        if any(p is None for p in parts):
            return None
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")", 10
    if isinstance(e, ast.Neg):
        a = _py_level(e.operand, names)
        return None if a is None else ("-" + _wrap(a, 8), 8)
    if isinstance(e, ast.Not):
        a = _py_level(e.operand, names)
        return None if a is None else ("not " + _wrap(a, 3), 3)
    if isinstance(e, ast.BinOp | ast.Compare | ast.BoolOp):
        a, b = _py_level(e.left, names), _py_level(e.right, names)
        if a is None or b is None:
            return None
        level = _LEVEL["cmp"] if isinstance(e, ast.Compare) else _LEVEL[e.op]
        if e.op == "**":
            simple = _simple_power(e.left, a) and _simple_power(e.right, b)
            sep = "**" if simple else " ** "
            return _wrap(a, 10) + sep + _wrap(b, 8), 9
        return f"{_wrap(a, level)} {e.op} {_wrap(b, level + 1)}", level
    if isinstance(e, ast.Conditional):
        parts = [_py_level(x, names) for x in (e.then, e.test, e.other)]
        if any(p is None for p in parts):
            return None
        return f"{_wrap(parts[0], 1)} if {_wrap(parts[1], 1)} else {_wrap(parts[2], 0)}", 0
    return None


def _wrap(got: tuple[str, int], need: int) -> str:
    text, level = got
    return text if level >= need else f"({text})"


def _simple_power(e, got) -> bool:
    """ruff and black write `c**2` without spaces when both operands are simple."""
    if isinstance(e, ast.Name):
        return True
    if isinstance(e, ast.Num):
        return got[1] == 10
    return isinstance(e, ast.Neg) and isinstance(e.operand, ast.Num)


# ---- the spec's own expressions ------------------------------------------------------------------
def _span_key(span: Span | None):
    return None if span is None else (span.line, span.col, span.end_line, span.end_col)


_SCALAR = (ast.Num, ast.Str, ast.Const, ast.Name, ast.BinOp, ast.Neg, ast.Compare, ast.BoolOp,
           ast.Not, ast.Conditional, ast.TupleExpr, ast.ListExpr)


def _expr_index(bdef: ast.BlockDef) -> dict:
    """Scalar expressions of a block's body by their position in the spec."""
    key = id(bdef)
    hit = _INDEX.get(key)
    if hit is not None and hit[0] is bdef:
        return hit[1]
    index = {}
    for stmt in bdef.body:
        for e in statement_exprs(stmt):
            for x in walk(e):
                if isinstance(x, _SCALAR) and _span_key(x.span) not in index:
                    index[_span_key(x.span)] = x
    _INDEX[key] = (bdef, index)
    return index


_INDEX: dict[int, tuple] = {}


def _call_exprs(n: Node, bdef: ast.BlockDef, index: dict) -> dict[str, ast.Expr]:
    """The expressions a block body passes to an inner block's parameters (by name)."""
    call = None
    want = _span_key(n.call_span)
    for stmt in bdef.body:
        for e in statement_exprs(stmt):
            for x in walk(e):
                if isinstance(x, ast.Call) and _span_key(x.span) == want:
                    call = x
    if call is None:
        return {}
    inner = _block_def(n.graph)
    if inner is None:
        return {}
    params = [p.name for p in inner.params]
    outer = {p.name for p in bdef.params}
    args = list(call.args)
    while args and _tensorish(args[0], outer):
        args.pop(0)
    out = {p: a for p, a in zip(params, args)}
    out.update({k.name: k.value for k in call.kwargs if k.name in params})
    return out


def _tensorish(e, params: set[str]) -> bool:
    if isinstance(e, ast.Name):
        return e.id not in params
    if isinstance(e, ast.Chain | ast.Call):
        return True
    if isinstance(e, ast.TupleExpr):
        return any(_tensorish(x, params) for x in e.items)
    if isinstance(e, ast.BinOp):
        return _tensorish(e.left, params) or _tensorish(e.right, params)
    return False


def _block_def(graph: Graph) -> ast.BlockDef | None:
    """The AST of the block a graph instantiates, parsed again from the spec's text (the IR
    keeps spans, not the AST)."""
    if graph.span is None:
        return None
    defs = _definitions(graph.span.source.text, graph.span.source.name)
    d = defs.get(graph.name)
    return d if d is not None and _span_key(d.span) == _span_key(graph.span) else None


@lru_cache(maxsize=32)
def _definitions(text: str, name: str) -> dict[str, ast.BlockDef]:
    return {d.name: d for d in parse(text, name).definitions if isinstance(d, ast.BlockDef)}


# ---- comments and docstrings ----------------------------------------------------------------------
def _comments(plan: Plan, cands: list[_Candidate]) -> dict[tuple, str]:
    """Shape comments: `(B, 64, 56, 56)` when every instance agrees, else dimensions named after
    parameters (`c`), the input's dimensions (`H`, `W`, and `H // stride`) or `?`. The key
    (None, k) holds input k's shape."""
    progs = plan.programs
    named: list[tuple[str, dict[int, Any], int | None]] = [
        (c.code, c.values, None) for c in cands
        if all(isinstance(v, int) and not isinstance(v, bool) for v in c.values.values())]
    params = [(c, v) for c, v, _ in named if c.isidentifier() and all(x > 0 for x in v.values())]
    out: dict[tuple, str] = {}
    for k, inp in enumerate(progs[0].graph.inputs):
        types = [p.graph.inputs[k].types[0] if p.graph.inputs[k].types else None for p in progs]
        if any(t is None for t in types) or len({t.rank for t in types}) != 1:
            continue
        letters = _LETTERS.get(types[0].rank, ())
        dims = ["B"]
        for d in range(types[0].rank):
            vec = {i: t.shape[d] for i, t in enumerate(types)}
            if len(set(vec.values())) == 1:
                dims.append(str(vec[0]))
                continue
            known = next((c for c, v, o in named if o is None and _match(v, vec)), None)
            if known is not None or d >= len(letters):
                dims.append(known or "?")
                continue
            name = letters[d] + (str(k + 1) if k else "")
            dims.append(name)
            named.append((name, vec, d))
            for c, cv in params:
                named.append((f"{name} // {c}", {i: vec[i] // cv[i] for i in vec if i in cv}, d))
            for q in (2, 4):
                named.append((f"{name} // {q}", {i: x // q for i, x in vec.items()}, d))
        out[(None, k)] = "(" + ", ".join(dims) + ")"
    for item in plan.items:
        if item.phi:
            continue
        first = item.first
        for j in range(first.node.n_outputs):
            types: dict[int, TensorType] = {}
            for i, m in item.members.items():
                if j < len(m.node.types):
                    types[i] = m.node.types[j]
            if len(types) != len(item.members) or len({t.rank for t in types.values()}) != 1:
                continue
            rank = next(iter(types.values())).rank
            dims = ["B"]
            for d in range(rank):
                vec = {i: t.shape[d] for i, t in types.items()}
                if len(set(vec.values())) == 1:
                    dims.append(str(next(iter(vec.values()))))
                    continue
                # an input's dimension at the same position first: W for W, not H
                ranked = sorted(named, key=lambda c: 0 if c[2] == d else 1 if c[2] is None else 2)
                dims.append(next((c for c, v, _ in ranked if _match(v, vec)), "?"))
            out[(item.id, j)] = "(" + ", ".join(dims) + ")"
    return out


_LETTERS = {1: ("F",), 2: ("T", "F"), 3: ("C", "H", "W"), 4: ("C", "D", "H", "W")}


def _match(values: dict[int, Any], vec: dict[int, Any]) -> bool:
    return all(i in values and values[i] == vec[i] and type(values[i]) is type(vec[i]) for i in vec)


def _model_doc(g: Graph) -> list[str]:
    def one(name, t):
        return f"{name} {t.batched()}" + ("" if t.dtype == "float32" else f" {t.dtype}")

    ins = ", ".join(one(n.name, n.types[0]) for n in g.inputs if n.types)
    outs = ", ".join(one(o.name, g.type_of(o.ref)) for o in g.outputs if g.type_of(o.ref))
    return [f"Model {g.name}", f"{ins} -> {outs}"]


def _block_doc(name: str, bdef: ast.BlockDef | None, k: int, n: int, plan: Plan) -> list[str]:
    sig = ""
    if bdef is not None:
        parts = []
        for p in bdef.params:
            d = _default(p)
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


def _emit(plan: Plan, reserved: frozenset) -> ClassDef:
    from .emit import emit

    return emit(plan, reserved)
