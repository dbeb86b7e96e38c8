"""Scalar evaluation: block parameters, arithmetic and literals in layer arguments."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

from ..diagnostics import Reporter
from ..ir.dims import Sym
from ..syntax import ast


@dataclass(frozen=True)
class Symbol:
    """A bare name used as a value (`init=kaiming_normal`): validated as a string."""

    name: str
    span: Any = None

    def __str__(self) -> str:
        return self.name


FAILED = object()  # the value of a name whose computation failed (its error is reported)


class EvalError(Exception):
    """`code` "" marks a consequence of an error already reported: it fails quietly."""

    def __init__(self, code: str, message: str, span, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.span, self.hint = code, message, span, hint


_BIN = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
}
_CMP = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}


def evaluate(expr: ast.Expr, env: dict[str, Any]) -> Any:
    """A constant expression's value. Names resolve in `env` (block parameters), else become
    `Symbol`s. Lists and tuples become tuples. Raises EvalError."""
    if isinstance(expr, ast.Num):
        return _finite(expr.value, expr)
    if isinstance(expr, ast.Str | ast.Const):
        return expr.value
    if isinstance(expr, ast.Name):
        if env.get(expr.id, None) is FAILED:
            raise EvalError("", f"'{expr.id}' failed", expr.span)  # reported where it was computed
        return env[expr.id] if expr.id in env else Symbol(expr.id, expr.span)
    if isinstance(expr, ast.TupleExpr | ast.ListExpr):
        return tuple(evaluate(e, env) for e in expr.items)
    if isinstance(expr, ast.Neg):
        v = _number(evaluate(expr.operand, env), expr.operand)
        return -v
    if isinstance(expr, ast.BinOp):
        a = _number(evaluate(expr.left, env), expr.left)
        b = _number(evaluate(expr.right, env), expr.right)
        if expr.op == "@":
            raise EvalError("E104", "@ multiplies matrices (tensors), not numbers", expr.span,
                            "for numbers write *")
        if expr.op in ("/", "//", "%") and b == 0:
            raise EvalError("E104", "division by zero", expr.span)
        if expr.op == "**" and isinstance(a, int) and isinstance(b, int) and b > 0 \
                and abs(a) > 1 and b * math.log2(abs(a)) > 64:
            # decided before computing: 9 ** 9 ** 9 would take minutes and gigabytes
            raise EvalError("E104", "number out of range (more than 64 bits)", expr.span,
                            "sizes and counts in a spec are at most 2**63")
        try:
            v = _BIN[expr.op](a, b)
        except (OverflowError, ValueError, ZeroDivisionError, TypeError) as exc:  # TypeError: 2**T
            raise EvalError("E104", f"cannot compute {expr.op}: {exc}", expr.span) from None
        if isinstance(v, complex) or (isinstance(v, int) and abs(v) > 2**63):
            raise EvalError("E104", "number out of range (more than 64 bits)", expr.span)
        return _finite(v, expr)
    if isinstance(expr, ast.Compare):
        a, b = evaluate(expr.left, env), evaluate(expr.right, env)
        _no_symbol(a, expr.left)
        _no_symbol(b, expr.right)
        for v, e in ((a, expr.left), (b, expr.right)):
            if isinstance(v, Sym):
                raise EvalError("E104", f"a condition cannot depend on {v}, which varies with the "
                                f"input's size", e.span, "a spec's structure is the same for every "
                                "admissible size; declare the dimension as a number to branch on it")
        try:
            return _CMP[expr.op](a, b)
        except TypeError:
            raise EvalError("E104", f"cannot compare {a!r} and {b!r}", expr.span) from None
    if isinstance(expr, ast.BoolOp):
        a = truth(evaluate(expr.left, env), expr.left)
        if expr.op == "and":
            return a and truth(evaluate(expr.right, env), expr.right)
        return a or truth(evaluate(expr.right, env), expr.right)
    if isinstance(expr, ast.Not):
        return not truth(evaluate(expr.operand, env), expr.operand)
    if isinstance(expr, ast.Conditional):
        test = truth(evaluate(expr.test, env), expr.test)
        return evaluate(expr.then if test else expr.other, env)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in FUNCTIONS:
        return _call(expr, env)
    size = tensor_size(expr, env)
    if size is not None:
        return size
    raise EvalError("E209", "expected a constant (a number, string, bool or list) here", expr.span)


# Functions of numbers in arguments (`scores / sqrt(d)`, `max(8, int(c * 0.75))`), as Python's.
FUNCTIONS = {"sqrt": (math.sqrt, 1, 1), "abs": (abs, 1, 1), "min": (min, 2, None), "max": (max, 2, None),
             "int": (int, 1, 1), "round": (round, 1, 1), "floor": (math.floor, 1, 1),
             "ceil": (math.ceil, 1, 1)}


def _call(expr: ast.Call, env: dict[str, Any]):
    name = expr.func.id
    fn, lo, hi = FUNCTIONS[name]
    if expr.kwargs or len(expr.args) < lo or (hi is not None and len(expr.args) > hi):
        want = f"{lo}" if lo == hi else f"{lo} or more"
        raise EvalError("E104", f"{name}() takes {want} number{'s' if want != '1' else ''}", expr.span)
    args = [_number(evaluate(a, env), a) for a in expr.args]
    varying = next((a for a in args if isinstance(a, Sym)), None)
    if varying is not None:  # min(T, 3) is 3 for some sizes and T for others: no one size
        raise EvalError("E307", f"{name}() of {varying}, which varies with the input's size, has no "
                        "single value", expr.span, "compute it from numbers, or declare the dimension as one")
    try:
        v = fn(*args)
    except (ValueError, OverflowError) as exc:
        raise EvalError("E104", f"cannot compute {name}: {exc}", expr.span) from None
    if isinstance(v, int) and abs(v) > 2**63:
        raise EvalError("E104", "number out of range (more than 64 bits)", expr.span)
    return _finite(v, expr)


# The env key of a function from a value's name to its type: set while a body is elaborated, so
# that `x.size(1)`, `x.shape[-1]` and `x.ndim` read the shape of the value `x` (a name cannot
# hold '<', so no spec name meets it).
SHAPES = "<shapes>"
BATCH_HINT = ("the batch size is known only when the model runs; a value's other dimensions are "
              "fixed: x.size(1), x.shape[-1]")


def size_parts(expr) -> tuple[ast.Name, Any] | None:
    """What a size expression asks of which name: `x.size(d)`, `x.shape[d]`, `x.size()[d]`
    give (x, d's expression); `x.ndim`, `x.dim()` give (x, "ndim"); `x.size()`, `x.shape`
    give (x, None) (the whole shape); anything else None."""
    if isinstance(expr, ast.Index) and isinstance(expr.value, ast.Attribute) and expr.value.name == "shape":
        base, dim = expr.value.value, expr.index
    elif isinstance(expr, ast.Index) and isinstance(expr.value, ast.Call) and not expr.value.args \
            and isinstance(expr.value.func, ast.Attribute) and expr.value.func.name == "size":
        base, dim = expr.value.func.value, expr.index  # x.size()[1], as torch allows
    elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.name == "size" \
            and not expr.kwargs and len(expr.args) <= 1:
        base, dim = expr.func.value, (expr.args[0] if expr.args else None)
    elif isinstance(expr, ast.Attribute) and expr.name in ("shape", "ndim"):
        base, dim = expr.value, (None if expr.name == "shape" else "ndim")
    elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and expr.func.name == "dim" \
            and not expr.args and not expr.kwargs:
        base, dim = expr.func.value, "ndim"
    else:
        return None
    return (base, dim) if isinstance(base, ast.Name) else None


def tensor_size(expr, env: dict[str, Any]) -> int | None:
    """`x.size(d)`, `x.shape[d]`, `x.ndim`, `x.dim()` as torch counts them (dim 0 the batch),
    when `x` names a value; None when `expr` is none of these."""
    shape_of = env.get(SHAPES)
    parts = size_parts(expr) if shape_of is not None else None
    if parts is None:
        return None
    base, dim = parts
    t = shape_of(base.id, base.span)
    if t is None:
        return None
    full = t.rank + t.has_batch
    if dim == "ndim":
        return full
    if dim is None:
        raise EvalError("E104", f"{base.id}'s whole shape includes the batch size, which is not a "
                        "number in a spec", expr.span, "take one dimension: "
                        f"{base.id}.size(1), {base.id}.shape[-1]")
    d = evaluate(dim, env)
    if type(d) is not int:
        raise EvalError("E104", f"a dimension is a whole number, not {d!r}", dim.span)
    if not -full <= d < full:
        raise EvalError("E104", f"dimension {d} is out of range for {base.id}, which has {full} "
                        f"dimensions{' (batch included)' if t.has_batch else ''}", dim.span)
    d %= full
    if t.has_batch and d == 0:
        raise EvalError("E104", f"dimension 0 of {base.id} is the batch", dim.span, BATCH_HINT)
    return t.shape[d - t.has_batch]


def _finite(v, expr):
    """Infinities and NaN are not spec values: `1e999` and `1e300 * 1e300` stop here, at the
    expression, before a shape rule meets them."""
    if isinstance(v, float) and not math.isfinite(v):
        raise EvalError("E104", f"number out of range: {v} is not a finite number", expr.span,
                        "a number in a spec lies within about ±1.8e308")
    return v


def _no_symbol(v, expr):
    if isinstance(v, Symbol):
        raise EvalError("E201", f"undefined name '{v.name}'", expr.span)


def _number(v, expr):
    _no_symbol(v, expr)
    if isinstance(v, bool) or not isinstance(v, int | float | Sym):
        raise EvalError("E104", f"expected a number, got {v!r}", expr.span)
    return v


def truth(v, expr) -> bool:
    _no_symbol(v, expr)
    if not isinstance(v, bool):
        raise EvalError("E104", f"expected true or false, got {v!r}", expr.span)
    return v


def plain(v):
    """Symbols become strings (for validation); tuples are walked."""
    if isinstance(v, Symbol):
        return v.name
    if isinstance(v, tuple):
        return tuple(plain(x) for x in v)
    return v


def report(rep: Reporter, exc: EvalError, hint_names=()) -> None:
    from ..diagnostics import did_you_mean

    if not exc.code:  # a consequence of an error reported before: this step failed, quietly
        rep.error_count += 1
        return
    hint = exc.hint
    if exc.code == "E201" and hint is None:
        hint = did_you_mean(str(exc.message).split("'")[1], hint_names)
    rep.error(exc.code, exc.message, exc.span, hint)
