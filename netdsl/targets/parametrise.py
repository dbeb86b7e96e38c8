"""Constructor arguments, signatures and shape comments of a class that serves every instance
of its plan (see blockclass.py, step 3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir.types import TensorType
from ..syntax import ast
from .lower import NO_DEFAULT, Code, Namespace, Slot
from .plans import ClassParam, Item, NoMerge, Plan
from .pysource import literal
from .specexpr import FAIL, literal_default, names_in, negate, to_python, value_of

MAX_EXPR = 40  # longer spec expressions are written as the values they take


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
                cands.append(_Candidate(text, {i: value_of(slot.expr, envs[i]) for i in everyone}, refs))
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
            raise NoMerge  # a new parameter no instance outside this branch could be given
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
        used.update(names_in(plan.cond))
        plan.cond_init, plan.cond_init_not = to_python(plan.cond, py), to_python(negate(plan.cond), py)
        if max(len(plan.cond_init), len(plan.cond_init_not)) > 70:
            raise NoMerge  # (a longer condition would need a split `if (...):`)
    # the signature: lifted arguments, then the block's parameters (required before defaulted)
    params = [p for p, _ in lifted]
    spec_params = [ClassParam(py[p.name], p.name, literal_default(p)) for p in bparams if p.name in used]
    params += [p for p in spec_params if p.default is NO_DEFAULT]
    params += [p for p in spec_params if p.default is not NO_DEFAULT]
    plan.params = params
    values_of = {p.py: v for p, v in lifted}
    plan.call_values = [[values_of[p.py][i] if p.spec is None else envs[i][p.spec] for p in params]
                        for i in everyone]
    plan.comments = _comments(plan, cands + [_Candidate(p.py, v, ()) for p, v in lifted])


def _spec_expression(e: ast.Expr, py: dict[str, str], envs: list[dict], vec: dict[int, Any]):
    """The spec's expression as Python, when it uses block parameters and gives each
    instance's actual value; else None."""
    refs = names_in(e)
    if not refs or not refs <= set(py):
        return None
    for i, v in vec.items():
        got = value_of(e, envs[i])
        if got is FAIL or not _same(got, v):
            return None
    text = to_python(e, py)
    if text is None or len(text) > MAX_EXPR:
        return None
    return text, tuple(sorted(refs))


def _same_key(v):
    try:
        return type(v).__name__, literal(v)
    except TypeError:
        return type(v).__name__, repr(v)


def _same(a, b) -> bool:
    """Equal as code: `1` is not `1.0` nor `True`."""
    return _same_key(a) == _same_key(b)


# ---- shape comments -----------------------------------------------------------------------------
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
            # rounding up, as a strided padded convolution does: what holds for every size when
            # the sizes are symbolic (H // stride holds for even ones only)
            for c, cv in params:
                named.append((f"({name} + {c} - 1) // {c}",
                              {i: (vec[i] + cv[i] - 1) // cv[i] for i in vec if i in cv}, d))
            for q in (2, 4):
                named.append((f"({name} + {q - 1}) // {q}", {i: (x + q - 1) // q for i, x in vec.items()}, d))
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
            dims = ["B"] if all(t.has_batch for t in types.values()) else []  # a Parameter has none
            for d in range(rank):
                vec = {i: t.shape[d] for i, t in types.items()}
                if len(set(vec.values())) == 1:
                    dims.append(str(next(iter(vec.values()))))
                    continue
                # an input's dimension at the same position first: W for W, not H
                ranked = sorted(named, key=lambda c: 0 if c[2] == d else 1 if c[2] is None else 2)
                dims.append(next((c for c, v, _ in ranked if _match(v, vec)), "?"))
            out[(item.id, j)] = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    return out


_LETTERS = {1: ("F",), 2: ("T", "F"), 3: ("C", "H", "W"), 4: ("C", "D", "H", "W")}


def _match(values: dict[int, Any], vec: dict[int, Any]) -> bool:
    return all(i in values and values[i] == vec[i] and type(values[i]) is type(vec[i]) for i in vec)
