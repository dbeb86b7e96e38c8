"""Argument types in words, for error messages: `a positive integer or a pair of positive integers`.

Pydantic moves a field's top-level constraints (`Field(ge=0, le=1)`) out of its annotation into
`FieldInfo.metadata`, so both are read here.

>>> from netdsl.ops import get_op
>>> describe_field(get_op("Dropout"), "p")
'a number from 0 to 1'
>>> describe_field(get_op("Conv2d"), "kernel_size")
'a positive integer or a pair of positive integers'
"""

from __future__ import annotations

from typing import Any, Literal, Union, get_args, get_origin

from typing_extensions import Annotated

_NUMBERS = {
    "int": ("integer", "integers"),
    "float": ("number", "numbers"),
    "number": ("number", "numbers"),
}
_COUNT = {2: "pair of", 3: "list of 3"}


def describe_field(cls, name: str) -> str:
    """A field of an op declaration, in words (with its constraints)."""
    f = cls.model_fields[name]
    return describe(f.annotation, list(f.metadata))


def literal_values(cls, name: str) -> list[str]:
    """The string values a field accepts (its Literal members), for did-you-mean."""
    out: list[str] = []
    stack = [cls.model_fields[name].annotation]
    while stack:
        tp = stack.pop()
        if get_origin(tp) is Literal:
            out += [v for v in get_args(tp) if isinstance(v, str)]
        else:
            stack += list(get_args(tp))
    return out


def describe(tp: Any, meta: list | None = None) -> str:
    phrases = _phrases(tp, meta or [])
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _phrases(tp, meta) -> list[str]:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        return _phrases(base, meta + _constraints(extra))
    if origin is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        numbers = [a for a in args if _base(a) in ("int", "float")]
        out = []
        for a in args:
            if {_base(n) for n in numbers} == {"int", "float"} and a in numbers:
                if a is numbers[0]:  # Union[StrictInt, StrictFloat, ...]: a number
                    out.append(_article(_noun("number", meta + _all_constraints(numbers))[0]))
            else:
                out += _phrases(a, meta)
        if len(args) != len(get_args(tp)):
            out.append("none")
        return list(dict.fromkeys(out))
    if origin is Literal:
        values = [_lit(v) for v in get_args(tp)]
        return values if len(values) == 1 else ["one of " + ", ".join(values)]
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return [f"a list of {_plural(args[0], meta)}"]
        if len(args) == 1:
            return [f"a list of one {describe(args[0]).split(' ', 1)[1]}"]
        if len(set(args)) == 1 and len(args) in _COUNT:
            return [f"a {_COUNT[len(args)]} {_plural(args[0], meta)}"]
        return ["a list (" + ", ".join(describe(a) for a in args) + ")"]
    base = _base(tp)
    if base == "bool":
        return ["true or false"]
    if base == "str":
        return ["a string"]
    if base in _NUMBERS:
        return [_article(_noun(base, meta)[0])]
    if tp is Any:
        return ["a constant"]
    return [getattr(tp, "__name__", str(tp))]


def _plural(tp, meta) -> str:
    base = _base(tp)
    extra = _constraints(get_args(tp)[1:]) if get_origin(tp) is Annotated else []
    if base in _NUMBERS:
        return _noun(base, meta + extra)[1]
    if get_origin(tp) is Union:
        args = get_args(tp)
        if {_base(a) for a in args} == {"int", "float"}:
            return _noun("number", meta + _all_constraints(args))[1]
        return "(" + " or ".join("none" if a is type(None) else _plural(a, []) for a in args) + ")"
    return describe(tp) + "s"


def _base(tp) -> str:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return {int: "int", float: "float", bool: "bool", str: "str"}.get(tp, "")


def _constraints(items) -> list:
    out = []
    for m in items:
        for mm in getattr(m, "metadata", None) or [m]:
            if any(getattr(mm, a, None) is not None for a in ("gt", "ge", "lt", "le")):
                out.append(mm)
    return out


def _all_constraints(args) -> list:
    return [c for a in args if get_origin(a) is Annotated for c in _constraints(get_args(a)[1:])]


def _noun(base: str, meta) -> tuple[str, str]:
    one, many = _NUMBERS[base]
    b = {
        a: getattr(m, a)
        for m in meta
        for a in ("gt", "ge", "lt", "le")
        if getattr(m, a, None) is not None
    }
    lo = b.get("ge", b.get("gt"))
    hi = b.get("le", b.get("lt"))
    if b.get("gt") == 0 and hi is None:
        return f"positive {one}", f"positive {many}"
    if b.get("ge") == 0 and hi is None:
        return f"non-negative {one}", f"non-negative {many}"
    if "ge" in b and "le" in b:
        return f"{one} from {_num(lo)} to {_num(hi)}", f"{many} from {_num(lo)} to {_num(hi)}"
    parts = [
        f"{s} {_num(b[a])}"
        for a, s in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
        if a in b
    ]
    suffix = (" " + " and ".join(parts)) if parts else ""
    return one + suffix, many + suffix


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _lit(v) -> str:
    return (
        f"'{v}'"
        if isinstance(v, str)
        else {True: "true", False: "false", None: "none"}.get(v, str(v))
        if v is None or isinstance(v, bool)
        else str(v)
    )


def _article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun
