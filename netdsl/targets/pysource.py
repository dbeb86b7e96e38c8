"""Python source for lowered classes: one `nn.Module` class each, nanoGPT-style, laid out as
`ruff format` would (pyformat.py).

Only literals reach the output from a spec, through `literal()` (ints, floats, bools, None,
strings with escapes, tuples of them), and names validated as identifiers (lower.Namespace,
passes/elaborate.py). Docstrings escape backslashes and quotes. So no text from a spec can
become code.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from ..ops.base import Op
from .lower import NO_DEFAULT, ClassDef, Code, Stmt
from .pyformat import format_header, format_statement


def literal(v: Any) -> str:
    """Python source for a constant argument value; anything else is a bug."""
    if isinstance(v, Code):
        return v.text
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        return repr(int(v))
    if isinstance(v, float):
        if math.isnan(v):
            return 'float("nan")'
        if math.isinf(v):
            return 'float("inf")' if v > 0 else 'float("-inf")'
        return repr(float(v)).replace("e+", "e")  # 1e308, as ruff writes it
    if isinstance(v, str):
        return py_str(v)
    if isinstance(v, Op):  # a layer given to a layer: nn.TransformerEncoderLayer(512, 8, ...)
        args, kwargs = v.ctor_args()
        return f"{v.torch}({', '.join([*map(literal, args), *(f'{k}={literal(x)}' for k, x in kwargs.items())])})"
    if isinstance(v, tuple | list):
        items = [literal(x) for x in v]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    raise TypeError(f"not a literal: {v!r}")


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def py_str(s: str) -> str:
    """A string literal as ruff writes it: double quotes unless the text holds more double than
    single quotes; backslashes, the quote and unprintable characters escaped."""
    q = "'" if s.count('"') > s.count("'") else '"'
    out = []
    for ch in str(s):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == q:
            out.append("\\" + q)
        elif not ch.isprintable():
            out.append(repr(ch)[1:-1])
        else:
            out.append(ch)
    return q + "".join(out) + q


def comment_text(text: str) -> str:
    """Text for a `#` comment: unprintable characters (a newline would end the comment and
    start code) escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def doc_text(text: str) -> str:
    """Text for inside a docstring: backslashes and every double quote escaped, so that neither
    a `\"\"\"` inside nor a quote at the end can close it; unprintable characters escaped."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == '"':
            out.append('\\"')
        elif not ch.isprintable():
            out.append(repr(ch)[1:-1])
        else:
            out.append(ch)
    return "".join(out)


def class_doc(parts: list[str], indent: int = 4) -> list[str]:
    """A class docstring: `Summary: details.` on one line when it fits, else the summary, a
    blank line and the details, with the closing quotes on their own line."""
    pad = " " * indent
    one = '"""' + doc_text(": ".join(parts) + ".") + '"""'
    if len(parts) == 1 or len(pad + one) <= 88:
        return [pad + one]
    lines = [pad + '"""' + doc_text(parts[0] + "."), ""]
    lines += [pad + doc_text(p) for p in parts[1:]]
    return lines + [pad + '"""']


def class_source(cls: ClassDef) -> str:
    out = format_header("class", cls.name, ["nn.Module"], 0)
    out += class_doc(cls.doc)
    if cls.params or cls.init:
        out.append("")
        params = ["self"] + [p if d is NO_DEFAULT else f"{p}={literal(d)}" for p, d in cls.params]
        out += format_header("def", "__init__", params, 4)
        out += statements([Stmt("super().__init__()"), *cls.init], 8)
    out.append("")
    out += format_header("def", "forward", ["self", *cls.inputs], 4)
    out += statements(cls.body, 8)
    return "\n".join(out) + "\n"


def statements(stmts: list[Stmt], indent: int) -> list[str]:
    out: list[str] = []
    for st in stmts:
        if st.body is None:
            out += format_statement(st.code, indent, st.comment)
        else:
            out.append(" " * indent + st.code)
            out += statements(st.body, indent + 4)
    return out


def imports_source(imports: set[str]) -> str:
    """`import x` lines, then `from x import y` lines, each sorted (isort's order)."""
    plain = sorted(i for i in imports if i.startswith("import "))
    froms = sorted(i for i in imports if i.startswith("from "))
    return "\n".join(plain + froms) + "\n"


def sorted_imports(imports: set[str]) -> str:
    """Standard library, then the rest (torch, torchvision, a custom layer's module), each
    as isort writes them."""
    def top(line: str) -> str:
        return line.split()[1].split(".")[0]

    std = {i for i in imports if top(i) in sys.stdlib_module_names}
    rest = imports - std
    return imports_source(std) + ("\n" + imports_source(rest) if rest else "")


def module_source(classes: list[ClassDef], header: str = "") -> str:
    """A whole module: header, imports, then the classes in dependency order."""
    imports = set().union(*(c.imports for c in classes)) if classes else set()
    parts = []
    if header:
        parts.append(header.rstrip() + "\n\n")
    parts.append(imports_source(imports))
    body = "\n\n".join(class_source(c) for c in classes)
    return "".join(parts) + "\n\n" + body
