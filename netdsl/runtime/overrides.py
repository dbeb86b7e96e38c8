"""Overrides of training-plan settings from outside the spec: `--set key=value`, the `--epochs`
style options and `netdsl.fit(..., key=value)`. Each becomes an `ast.Setting` whose spans
point into its own little source (named `--set`, `--epochs`, `fit()`), so a mistake in an
override is reported exactly like a mistake in the spec. Torch-free.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from ..diagnostics import Diagnostic, NetdslError
from ..source import SourceFile, Span
from ..syntax import ast
from ..syntax.parser import parse_expression

_KEY = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*$")
_WRAP_COL = 5  # parse_expression puts the text after "_ = " on line 2


def parse_set(text: str, label: str = "--set") -> ast.Setting:
    """`optimizer.lr=3e-4` -> a Setting. Raises NetdslError (E503, or the syntax error)."""
    source = SourceFile(label, text)
    whole = Span(source, 1, 1, 1, len(text) + 1)
    if "=" not in text:
        raise NetdslError([Diagnostic("E503", f"{label} expects KEY=VALUE, got {text!r}", whole,
                                      "for example: --set optimizer.lr=3e-4")])
    key_text, value_text = text.split("=", 1)
    m = _KEY.match(key_text)
    if m is None:
        raise NetdslError([Diagnostic(
            "E503", f"{key_text.strip()!r} is not a setting name" if key_text.strip()
            else f"no key before '=' in {text!r}",
            Span(source, 1, 1, 1, max(2, len(key_text) + 1)),
            "a key is a setting such as epochs or optimizer.lr")])
    if not value_text.strip():
        raise NetdslError([Diagnostic("E503", f"no value after '{key_text}='", whole,
                                      f"for example: {label} {key_text.strip()}=1")])
    key_start = m.start(1) + 1
    key_span = Span(source, 1, key_start, 1, key_start + len(m.group(1)))
    value = _expression(value_text, source, offset=len(key_text) + 1)
    return ast.Setting(Span(source, 1, key_start, 1, len(text) + 1), m.group(1).split("."),
                       key_span, value)


def literal_setting(key: str, value: Any, label: str) -> ast.Setting:
    """An override from a Python value (`fit(spec, epochs=3)`, `--data-root DIR`)."""
    return parse_set(f"{key}={to_text(value)}", label)


def to_text(value: Any) -> str:
    """A Python value as netdsl expression text (strings quoted)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NetdslError([Diagnostic("E503", f"{value!r} is not a finite number")])
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_text(v) for v in value) + "]"
    if hasattr(value, "tolist"):  # numpy arrays and tensors
        return to_text(value.tolist())
    raise NetdslError([Diagnostic("E503", f"cannot use a {type(value).__name__} as a setting value",
                                  hint="use numbers, strings, booleans, None or lists")])


def _expression(text: str, source: SourceFile, offset: int) -> ast.Expr:
    """Parse `text` (which sits at column `offset + 1` of `source`) with spans into `source`."""
    try:
        expr = parse_expression(text, source.name)
    except NetdslError as exc:  # the wrapper's closing brace is the end of the value
        raise NetdslError([dataclasses.replace(
            d, span=_move(d.span, source, offset, len(text)),
            message=d.message.replace("unexpected '}'", "unexpected end of the value"),
            hint=None if d.hint and "line" in d.hint else d.hint)  # lines of the wrapper
            for d in exc.diagnostics]) from None
    return _remap(expr, source, offset, len(text))


def _move(span: Span | None, source: SourceFile, offset: int, n: int) -> Span | None:
    if span is None:
        return None
    if span.line != 2:  # past the end of the value (the wrapper's closing brace)
        return Span(source, 1, offset + n + 1, 1, offset + n + 2)
    col = span.col - _WRAP_COL + offset + 1
    end = (span.end_col if span.end_line == 2 else _WRAP_COL + n) - _WRAP_COL + offset + 1
    return Span(source, 1, max(1, col), 1, max(col + 1, end))


def _remap(node, source: SourceFile, offset: int, n: int):
    """A copy of an AST subtree with every span moved into `source`."""
    if isinstance(node, list):
        return [_remap(x, source, offset, n) for x in node]
    if isinstance(node, Span):
        return _move(node, source, offset, n)
    if dataclasses.is_dataclass(node) and isinstance(node, ast.Node):
        changes = {f.name: _remap(getattr(node, f.name), source, offset, n)
                   for f in dataclasses.fields(node)}
        return dataclasses.replace(node, **changes)
    return node
