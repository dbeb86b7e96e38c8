"""Declared dimensions: the names in a model's input shapes (`input x: [3, H, W]`) and their
`where` constraints, read into `Dim`s that every later pass computes with."""

from __future__ import annotations

import math

from ..diagnostics import Reporter, did_you_mean
from ..ir.dims import Dim
from ..syntax import ast
from .scalars import EvalError, evaluate

FORMS = "a constraint reads H % 32 == 0, H >= 32 or T <= 1024 (a declared name and a number)"
BATCH_NAMES = ("B", "N", "batch", "batch_size", "bs")  # what torch code calls the batch
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}


def declare(mdef: ast.ModelDef, taken: set[str], rep: Reporter) -> dict[str, Dim]:
    """The model's dimensions by name. Errors (E304) are reported; a dimension whose
    constraints are wrong keeps the ones that were right."""
    inputs = [s for s in mdef.body if isinstance(s, ast.Input)]
    names: dict[str, ast.Name] = {}
    for stmt in inputs:
        if stmt.shape is None:
            continue
        items = stmt.shape.items if isinstance(stmt.shape, ast.ListExpr | ast.TupleExpr) else [stmt.shape]
        for k, e in enumerate(items):
            if k == 0 and isinstance(e, ast.Name) and e.id in BATCH_NAMES and len(items) > 1:
                # torch's (B, C, H, W): read here as a sample's dimension, it would shift the others
                rep.error("E304", f"'{e.id}' looks like the batch dimension, which an input leaves out",
                          e.span, f"write the shape of one sample: input {stmt.name}: "
                          f"[{', '.join(_text(i.span) for i in items[1:])}]")
                continue
            if isinstance(e, ast.Name) and e.id not in names:
                if e.id in taken:
                    rep.error("E304", f"'{e.id}' names a value or a layer, so it cannot also name a "
                              "dimension", e.span, "give the dimension another name (H, W, T, ...)")
                    continue
                names[e.id] = e
    step = {n: 1 for n in names}
    lo: dict[str, int] = {n: 1 for n in names}
    hi: dict[str, int | None] = {n: None for n in names}
    spans: dict[str, list] = {n: [] for n in names}
    for stmt in inputs:
        for c in (c for w in stmt.where for c in _each(w)):
            got = _constraint(c, names, rep)
            if got is None:
                continue
            name, op, k = got
            spans[name].append(c.span)
            if op == "%":
                step[name] = math.lcm(step[name], k)
            elif op in (">", ">="):
                lo[name] = max(lo[name], k + (op == ">"))
            elif op in ("<", "<="):
                bound = k - (op == "<")
                hi[name] = bound if hi[name] is None else min(hi[name], bound)
            else:  # ==: one size
                lo[name] = max(lo[name], k)
                hi[name] = k if hi[name] is None else min(hi[name], k)
    dims = {}
    for name, e in names.items():
        s = step[name]
        first = max(-(-lo[name] // s), 1)
        last = None if hi[name] is None else hi[name] // s
        if last is not None and last < first:
            rep.error("E304", f"no size of {name} meets its constraints "
                      f"({', '.join(_text(sp) for sp in spans[name])})",
                      spans[name][-1] if spans[name] else e.span,
                      "a dimension needs at least one admissible size")
            continue
        dims[name] = Dim(name, s, first, last)
    return dims


def _text(span) -> str:
    line = span.source.line(span.line)
    return line[span.col - 1:span.end_col - 1] if span.end_line == span.line else line[span.col - 1:]


def _each(c) -> list:
    """`H % 32 == 0 and H >= 32` is two constraints."""
    if isinstance(c, ast.BoolOp) and c.op == "and":
        return _each(c.left) + _each(c.right)
    return [c]


def _constraint(c, names: dict, rep: Reporter):
    """(name, op, number) from `H % 32 == 0`, `H >= 32`, `1024 >= T`; None after an error."""
    if not isinstance(c, ast.Compare):
        rep.error("E304", "a where clause lists constraints on the input's dimensions", c.span, FORMS)
        return None
    left, right, op = c.left, c.right, c.op
    if isinstance(left, ast.BinOp) and left.op == "%":
        k = _int(left.right)
        if op != "==" or _int(right) != 0 or k is None or k < 1:
            why = ("a remainder other than 0 cannot be declared" if op == "==" and _int(right) and k
                   else "the divisor is a positive number")
            rep.error("E304", f"a divisibility constraint reads H % 32 == 0: {why}", c.span, FORMS)
            return None
        name = _name(left.left, names, rep)
        return None if name is None else (name, "%", k)
    if _int(left) is not None and _int(right) is None:
        left, right, op = right, left, _FLIP.get(op, op)
    if not isinstance(left, ast.Name) or _int(right) is None or op == "!=":
        rep.error("E304", "a bound compares a dimension with a number: H >= 32, T <= 1024", c.span, FORMS)
        return None
    name = _name(left, names, rep)
    return None if name is None else (name, op, _int(right))


def _int(e) -> int | None:
    """The whole number a constant expression makes (`1024`, `2**10`, `-3`); else None."""
    if isinstance(e, ast.Name):
        return None
    try:
        v = evaluate(e, {})
    except EvalError:
        return None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _name(e, names: dict, rep: Reporter) -> str | None:
    if isinstance(e, ast.Name) and e.id in names:
        return e.id
    if isinstance(e, ast.Name):
        rep.error("E304", f"'{e.id}' is not a dimension of any input", e.span,
                  did_you_mean(e.id, list(names)) or "name it in an input's shape: input x: [3, H, W]")
    else:
        rep.error("E304", "a constraint is on one dimension's name", e.span, FORMS)
    return None
