"""Plans: the code of one class before values get names, for one structure of a block or for
two structures joined by a condition of the block's body (see blockclass.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..passes.names import statement_exprs
from ..passes.scalars import EvalError, evaluate
from ..syntax import ast
from .lower import NO_DEFAULT, Member, Program


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


class NoMerge(Exception):
    """Two structures cannot share a class after all."""



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
    """One plan for two structures, guarded by a conditional of the block (raises NoMerge)."""
    cond, true_group = _condition(bdef, group_a, group_b)
    false_group = group_a if true_group is group_b else group_b
    programs = true_group + false_group
    t_ids = list(range(len(true_group)))
    f_ids = list(range(len(true_group), len(programs)))
    t, f = true_group[0], false_group[0]
    if [n.name for n in t.graph.inputs] != [n.name for n in f.graph.inputs] \
            or len(t.graph.outputs) != len(f.graph.outputs):
        raise NoMerge
    t_sig = {m.name: m for m in t.members}
    f_sig = {m.name: m for m in f.members}
    matched = {n for n in t_sig if n in f_sig and t_sig[n].sig == f_sig[n].sig}
    if [m.name for m in t.members if m.name in matched] != [m.name for m in f.members if m.name in matched]:
        raise NoMerge
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
        raise NoMerge
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
    raise NoMerge


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
