"""Training-plan declarations: the base class, the registries, and binding spec calls to them.

A loss, optimizer, scheduler, data source, transform or callback is declared once, as a
frozen pydantic model whose fields are the torch constructor's parameters (in torch's
order, with torch's defaults), like the layer ops in netdsl/ops/base.py. The plan
(runtime/plan.py) binds `Adam(lr=1e-3)` in a spec to `Adam`'s declaration; the runner and
`netdsl compile` read the bound declaration (`Decl.kwargs()`), never the spec text.

Torch-free: `netdsl check` validates training plans without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ..diagnostics import Reporter, did_you_mean
from ..ops.base import Extra, Inferred, _marker, describe_type
from ..passes.scalars import EvalError, Symbol, evaluate, plain, report
from ..source import Span
from ..syntax import ast


class Decl(BaseModel):
    """Base of every training-plan declaration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str] = ""  # the name a spec writes: "Adam"
    torch: ClassVar[str | None] = None  # "torch.optim.Adam"; None for netdsl's own
    positional: ClassVar[tuple[str, ...] | None] = None  # fields positional args fill (None: all)
    tensors: ClassVar[tuple[str, ...]] = ()  # fields torch wants as tensors (a loss's weight)
    shown: ClassVar[tuple[str, ...]] = ()  # fields `describe` shows even at their default
    descriptions: ClassVar[dict[str, str]] = {}  # field -> what it takes, where types say it badly
    open_type: ClassVar[Any] = None  # extra keywords it takes, and their type (data fields)
    apart: ClassVar[tuple[str, ...]] = ()  # fields `describe` leaves to lines of their own

    def check(self) -> list[tuple[str | None, str]]:
        """Problems that involve several fields: (field to point at or None, message)."""
        return []

    @classmethod
    def positional_fields(cls) -> list[str]:
        if cls.positional is not None:
            return list(cls.positional)
        return [n for n, f in cls.model_fields.items() if not _marker(f, Extra)]

    @classmethod
    def required_fields(cls) -> list[str]:
        return [n for n, f in cls.model_fields.items()
                if f.is_required() and not _marker(f, Inferred)]

    @classmethod
    def describe_field(cls, name: str) -> str:
        if name in cls.descriptions:
            return cls.descriptions[name]
        f = cls.model_fields[name]  # pydantic moves a top-level Annotated's constraints here
        meta = [m for m in f.metadata if not isinstance(m, (Inferred, Extra, Components))]
        text = describe_type(Annotated[(f.annotation, *meta)] if meta else f.annotation)
        return text.replace("int or float", "a number")

    def kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments: every torch argument that differs from torch's
        default (inferred ones included), as plain Python values (tuples become lists)."""
        out = {}
        for name, f in type(self).model_fields.items():
            if _marker(f, Extra):
                continue
            value = getattr(self, name)
            if f.is_required() or _marker(f, Inferred) or value != f.default:
                out[name] = _jsonable(value)
        return out

    def extras(self) -> dict[str, Any]:
        """The netdsl-only arguments (not passed to torch)."""
        return {n: _jsonable(getattr(self, n)) for n, f in type(self).model_fields.items()
                if _marker(f, Extra)}

    def describe(self) -> str:
        """`Adam(lr=0.003)`: the kind and its non-default arguments."""
        fields = type(self).model_fields
        args = {**{k: _jsonable(getattr(self, k)) for k in self.shown}, **self.kwargs(),
                **{k: v for k, v in self.extras().items() if v != fields[k].default}}
        args = {k: args[k] for k in fields if k in args and k not in self.apart}
        return f"{self.kind}(" + ", ".join(f"{k}={_show(v)}" for k, v in args.items()) + ")"


class Components:
    """Marks a field whose value is a list of declarations of another family (`transform=[...]`)."""

    def __init__(self, family: Family):
        self.family = family


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, Decl):
        extras = v.extras()
        return {"name": v.kind, "kwargs": v.kwargs(), **({"extras": extras} if extras else {})}
    return v


def _show(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, dict) and "name" in v:
        return v["name"] + ("(" + ", ".join(f"{k}={_show(x)}" for k, x in v["kwargs"].items()) + ")"
                            if v["kwargs"] else "")
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


show = _show


class Family:
    """A registry of declarations of one kind (optimizers, losses, ...), looked up by name."""

    def __init__(self, what: str, plural: str):
        self.what, self.plural = what, plural
        self.members: dict[str, type[Decl]] = {}

    def register(self, cls: type[Decl]) -> type[Decl]:
        """Class decorator: the class's name is the name a spec writes (exactly, as in torch)."""
        cls.kind = cls.kind or cls.__name__
        assert cls.kind not in self.members, f"{self.what} {cls.kind} declared twice"
        self.members[cls.kind] = cls
        return cls

    def lookup(self, name: str) -> type[Decl] | None:
        return self.members.get(name)

    def names(self) -> list[str]:
        return list(self.members)


@dataclass
class Bound:
    """A declaration bound from spec text, with where each argument came from."""

    decl: Decl
    span: Span  # the whole call (or bare name)
    arg_spans: dict[str, Span] = field(default_factory=dict)

    def at(self, arg: str) -> Span:
        """The span of one argument's value, or of the call when the argument was not written."""
        return self.arg_spans.get(arg, self.span)


@dataclass
class Arg:
    """One written argument: keyword (name set) or positional (name None)."""

    name: str | None
    name_span: Span | None
    value: ast.Expr


def call_parts(expr: ast.Expr) -> tuple[ast.Name, list[Arg]] | None:
    """`Adam(lr=1e-3)` or bare `Adam`: the name node and the arguments; None for anything else."""
    if isinstance(expr, ast.Name):
        return expr, []
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        return expr.func, [Arg(None, None, a) for a in expr.args] + [
            Arg(k.name, k.name_span, k.value) for k in expr.kwargs]
    return None


def lookup(family: Family, name: ast.Name, rep: Reporter, code: str = "E405") -> type[Decl] | None:
    cls = family.lookup(name.id)
    if cls is None:
        rep.error(code, f"unknown {family.what} '{name.id}'", name.span,
                  did_you_mean(name.id, family.names()) or
                  f"netdsl knows these {family.plural}: {', '.join(family.names())}")
    return cls


_ERR = object()


def bind(cls: type[Decl], args: list[Arg], span: Span, rep: Reporter) -> Bound | None:
    """Bind written arguments to `cls`; report every mistake at its argument; None on error."""
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    tried: set[str] = set()  # written, even if the value was wrong
    opened: dict[str, Any] = {}  # fields named by the spec (sources with open_type)
    ok = True
    positional = cls.positional_fields()
    allowed = list(cls.model_fields)
    n_pos = 0
    for a in args:
        if a.name is None:
            if n_pos >= len(positional):
                sig = ", ".join(positional) or "none"
                rep.error("E401", f"{cls.kind} takes {len(positional)} positional argument"
                          f"{'s' if len(positional) != 1 else ''} ({sig}); name this one",
                          a.value.span, f"for example {cls.kind}({_example(cls)})")
                ok = False
                continue
            fname, aspan = positional[n_pos], a.value.span
            n_pos += 1
        else:
            fname, aspan = a.name, a.value.span
            if fname not in allowed and cls.open_type is not None:  # a field the spec names
                if fname in opened:
                    rep.error("E401", f"argument '{fname}' is given twice", a.name_span)
                    ok = False
                    continue
                val = _open_value(cls, fname, a.value, rep)
                if val is _ERR:
                    ok = False
                    continue
                opened[fname], spans[fname] = val, aspan
                continue
            if fname not in allowed:
                rep.error("E402", f"{cls.kind} has no argument '{fname}'", a.name_span,
                          did_you_mean(fname, allowed) or
                          (f"its arguments are: {', '.join(allowed)}" if allowed else
                           f"{cls.kind} takes no arguments"))
                ok = False
                continue
        if fname in tried:
            rep.error("E401", f"argument '{fname}' is given twice", a.name_span or aspan)
            ok = False
            continue
        tried.add(fname)
        val = convert(cls, fname, a.value, rep)
        if val is _ERR:
            ok = False
            continue
        values[fname], spans[fname] = val, aspan
    missing = [f for f in cls.required_fields() if f not in values and f not in tried]
    if missing:
        rep.error("E401", f"{cls.kind} needs {', '.join(repr(m) for m in missing)}", span,
                  f"for example {cls.kind}({_example(cls)})")
        ok = False
    if opened:
        values["open_fields"] = tuple(opened.items())
    try:
        decl = cls(**values)
    except ValidationError as exc:
        seen = set()
        for err in exc.errors():
            fname = next((p for p in err["loc"] if isinstance(p, str)), None)
            if fname in seen or err["type"] == "missing":
                continue
            seen.add(fname)
            if fname in values:
                shown = _show(_jsonable(values[fname]))
                rep.error("E401", f"{cls.kind}: {fname}={shown} is invalid; "
                          f"expected {cls.describe_field(fname)}", spans.get(fname, span))
            else:
                rep.error("E401", f"{cls.kind}: {err['msg']}", span)
        return None
    if not ok:
        return None
    bound = Bound(decl, span, spans)
    problems = decl.check()
    for fname, msg in problems:
        rep.error("E401", f"{cls.kind}: {msg}", bound.at(fname) if fname else span)
    return None if problems else bound


def _open_value(cls: type[Decl], fname: str, expr: ast.Expr, rep: Reporter) -> Any:
    """The value of a field named by the spec (`tensors(left=[...])`), checked against the
    source's `open_type`; `_ERR` after a report."""
    try:
        v = plain(evaluate(expr, {}))
    except EvalError as exc:
        report(rep, exc)
        return _ERR
    try:
        return TypeAdapter(cls.open_type).validate_python(_tuples(v))
    except ValidationError:
        rep.error("E401", f"{cls.kind}: {fname}={_show(_jsonable(v))} is invalid; expected "
                  f"{cls.descriptions.get('open_fields', describe_type(cls.open_type))}",
                  expr.span)
        return _ERR


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, (list, tuple)) else v


def _example(cls: type[Decl]) -> str:
    req = cls.required_fields()
    return ", ".join(f"{r}=..." for r in req) if req else ""


def convert(cls: type[Decl], fname: str, expr: ast.Expr, rep: Reporter) -> Any:
    """A written value as the Python value the field validates; `_ERR` after a report."""
    f = cls.model_fields[fname]
    comp = _marker(f, Components)
    if comp is not None:
        return bind_components(comp.family, expr, rep)
    try:
        v = evaluate(expr, {})
    except EvalError as exc:
        report(rep, exc)
        return _ERR
    bad = _symbol(v)
    if bad is not None and not _takes_names(f.annotation):
        rep.error("E401", f"'{bad.name}' is not a value here", bad.span or expr.span,
                  f"{cls.kind}: {fname} expects {cls.describe_field(fname)}"
                  + ("; write strings in quotes" if "string" in cls.describe_field(fname) else ""))
        return _ERR
    return plain(v)


def bind_components(family: Family, expr: ast.Expr, rep: Reporter) -> Any:
    """`[ToTensor, Normalize(0.5, 0.5)]` (or one item alone) as a tuple of declarations."""
    items = expr.items if isinstance(expr, (ast.ListExpr, ast.TupleExpr)) else [expr]
    out, ok = [], True
    for item in items:
        parts = call_parts(item)
        if parts is None:
            rep.error("E401", f"expected a {family.what} such as {family.names()[0]}(...)",
                      item.span)
            ok = False
            continue
        name, args = parts
        cls = lookup(family, name, rep)
        b = bind(cls, args, item.span, rep) if cls else None
        if b is None:
            ok = False
            continue
        out.append(b.decl)
    return tuple(out) if ok else _ERR


def _symbol(v) -> Symbol | None:
    if isinstance(v, Symbol):
        return v
    if isinstance(v, tuple):
        for x in v:
            s = _symbol(x)
            if s is not None:
                return s
    return None


def _takes_names(tp) -> bool:
    """Whether a bare name (`mode=max`) is acceptable: the type includes a Literal."""
    origin = get_origin(tp)
    if origin is Literal:
        return True
    if origin in (Union, Annotated, tuple, list):
        return any(_takes_names(a) for a in get_args(tp) if a is not Ellipsis)
    return False


def expr_value(expr: ast.Expr, rep: Reporter) -> Any:
    """A constant setting value (bare names become strings); `_ERR` after a report."""
    try:
        return plain(evaluate(expr, {}))
    except EvalError as exc:
        report(rep, exc)
        return _ERR


ERR = _ERR
