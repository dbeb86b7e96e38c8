"""The spec's own expressions in generated code: found in the block's AST, evaluated for each
instance, and written as Python.

The IR keeps spans, not the AST, so a block's definition is parsed again from the spec's text
(`block_def`) and its scalar expressions indexed by position (`expr_index`): a layer node's
`arg_spans` then lead to the expression the spec wrote for each argument (`stride`, `c * 4`).
`to_python` writes one as Python with the block's parameters renamed as in the class, and
operators, precedence and parentheses as ruff writes them (`c**2`).
"""

from __future__ import annotations

from functools import lru_cache

from ..ir.graph import Graph, Node
from ..passes.names import statement_exprs, walk
from ..passes.scalars import EvalError, Symbol, evaluate
from ..source import Span
from ..syntax import ast, parse
from .lower import NO_DEFAULT
from .pysource import literal


def negate(e: ast.Expr) -> ast.Expr:
    if isinstance(e, ast.Compare) and e.op in ("==", "!="):
        return ast.Compare(e.span, "!=" if e.op == "==" else "==", e.left, e.right)
    if isinstance(e, ast.Not):
        return e.operand
    return ast.Not(e.span, e)


FAIL = object()


def value_of(e: ast.Expr, env: dict):
    try:
        v = evaluate(e, env)
    except EvalError:
        return FAIL
    return FAIL if _has_symbol(v) else v


def _has_symbol(v) -> bool:
    if isinstance(v, Symbol):
        return True
    return isinstance(v, tuple) and any(_has_symbol(x) for x in v)


def names_in(e) -> set[str]:
    return {x.id for x in walk(e) if isinstance(x, ast.Name)}


def literal_default(p: ast.Param):
    if p.default is None:
        return NO_DEFAULT
    v = value_of(p.default, {})
    if v is FAIL:
        return NO_DEFAULT
    try:
        literal(v)
    except TypeError:
        return NO_DEFAULT
    return v


# ---- spec expressions as Python ------------------------------------------------------------------
_LEVEL = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 6, "-": 6, "*": 7, "/": 7, "//": 7, "%": 7,
          "neg": 8, "**": 9}


def to_python(e, names: dict[str, str]) -> str | None:
    got = _python(e, names)
    return got[0] if got else None


def _python(e, names) -> tuple[str, int] | None:
    """(Python text, precedence level) of a scalar expression; None for anything else."""
    if isinstance(e, ast.Num | ast.Str | ast.Const):
        text = literal(e.value)
        return text, 10 if not text.startswith("-") else 8
    if isinstance(e, ast.Name):
        return (names[e.id], 10) if e.id in names else None
    if isinstance(e, ast.TupleExpr | ast.ListExpr):
        parts = [to_python(x, names) for x in e.items]
        if any(p is None for p in parts):
            return None
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")", 10
    if isinstance(e, ast.Neg):
        a = _python(e.operand, names)
        return None if a is None else ("-" + _wrap(a, 8), 8)
    if isinstance(e, ast.Not):
        a = _python(e.operand, names)
        return None if a is None else ("not " + _wrap(a, 3), 3)
    if isinstance(e, ast.BinOp | ast.Compare | ast.BoolOp):
        a, b = _python(e.left, names), _python(e.right, names)
        if a is None or b is None:
            return None
        level = _LEVEL["cmp"] if isinstance(e, ast.Compare) else _LEVEL[e.op]
        if e.op == "**":
            simple = _simple_power(e.left, a) and _simple_power(e.right, b)
            sep = "**" if simple else " ** "
            return _wrap(a, 10) + sep + _wrap(b, 8), 9
        return f"{_wrap(a, level)} {e.op} {_wrap(b, level + 1)}", level
    if isinstance(e, ast.Conditional):
        parts = [_python(x, names) for x in (e.then, e.test, e.other)]
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
def span_key(span: Span | None):
    return None if span is None else (span.line, span.col, span.end_line, span.end_col)


_SCALAR = (ast.Num, ast.Str, ast.Const, ast.Name, ast.BinOp, ast.Neg, ast.Compare, ast.BoolOp,
           ast.Not, ast.Conditional, ast.TupleExpr, ast.ListExpr)


def expr_index(bdef: ast.BlockDef) -> dict:
    """Scalar expressions of a block's body by their position in the spec (the last few
    blocks' indexes are kept: a block is lowered once per instance)."""
    hit = _INDEX.get(id(bdef))
    if hit is not None and hit[0] is bdef:
        return hit[1]
    index = {}
    for stmt in bdef.body:
        for e in statement_exprs(stmt):
            for x in walk(e):
                if isinstance(x, _SCALAR) and span_key(x.span) not in index:
                    index[span_key(x.span)] = x
    _INDEX[id(bdef)] = (bdef, index)
    while len(_INDEX) > 64:
        del _INDEX[next(iter(_INDEX))]
    return index


_INDEX: dict[int, tuple] = {}  # id(block) -> (block, index), oldest first


def call_exprs(n: Node, bdef: ast.BlockDef, index: dict) -> dict[str, ast.Expr]:
    """The expressions a block body passes to an inner block's parameters (by name)."""
    call = None
    want = span_key(n.call_span)
    for stmt in bdef.body:
        for e in statement_exprs(stmt):
            for x in walk(e):
                if isinstance(x, ast.Call) and span_key(x.span) == want:
                    call = x
    if call is None:
        return {}
    inner = block_def(n.graph)
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


def block_def(graph: Graph) -> ast.BlockDef | None:
    """The AST of the block a graph instantiates, parsed again from the spec's text (the IR
    keeps spans, not the AST)."""
    if graph.span is None:
        return None
    defs = _definitions(graph.span.source.text, graph.span.source.name)
    d = defs.get(graph.name)
    return d if d is not None and span_key(d.span) == span_key(graph.span) else None


@lru_cache(maxsize=32)
def _definitions(text: str, name: str) -> dict[str, ast.BlockDef]:
    return {d.name: d for d in parse(text, name).definitions if isinstance(d, ast.BlockDef)}
