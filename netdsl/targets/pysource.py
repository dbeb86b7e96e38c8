"""Python source for lowered classes: one `nn.Module` class each, nanoGPT-style.

Only literals reach the output, through `literal()` (repr of ints, floats, bools, None,
strings and tuples of them); names were validated as identifiers before lowering. So no text
from a spec can become code.
"""

from __future__ import annotations

import math
from typing import Any

from .lower import ClassDef

LINE = 88


def literal(v: Any) -> str:
    """Python source for a constant argument value; anything else is a bug."""
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        return repr(int(v))
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return f"float({repr(str(v))})"
        return repr(float(v))
    if isinstance(v, str):
        return repr(str(v))
    if isinstance(v, tuple | list):
        items = [literal(x) for x in v]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    raise TypeError(f"not a literal: {v!r}")


def class_source(cls: ClassDef) -> str:
    out = [f"class {cls.name}(nn.Module):", f'    """{_doc(cls.doc)}"""', ""]
    out.append("    def __init__(self):")
    out.append("        super().__init__()")
    for s in cls.submodules:
        parts = [literal(a) for a in s.args] + [f"{k}={literal(v)}" for k, v in s.kwargs.items()]
        out.extend(_call(f"        self.{s.attr} = {s.ctor}(", parts, ")"))
        for st in s.setup:
            out.append("        " + st)
    out.append("")
    args = ", ".join(["self", *cls.inputs])
    out.append(f"    def forward({args}):")
    for ln in cls.body:
        code = "        " + ln.code
        if ln.comment:
            with_comment = f"{code}  # {ln.comment}"
            if len(with_comment) <= LINE:
                code = with_comment
            else:
                out.append(f"        # {ln.comment}")
        out.append(code)
    out.append("        return " + ", ".join(cls.returns))
    return "\n".join(out) + "\n"


def _call(head: str, parts: list[str], tail: str) -> list[str]:
    one = head + ", ".join(parts) + tail
    if len(one) <= LINE:
        return [one]
    indent = " " * (len(head) - len(head.lstrip()) + 4)
    return [head] + [f"{indent}{p}," for p in parts] + [head[: len(head) - len(head.lstrip())] + tail]


def _doc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def module_source(classes: list[ClassDef], header: str = "") -> str:
    """A whole module: header comment, imports, then the classes in dependency order."""
    imports = set().union(*(c.imports for c in classes)) if classes else set()
    plain = sorted(i for i in imports if i.startswith("import "))
    froms = sorted(i for i in imports if i.startswith("from "))
    parts = []
    if header:
        parts.append(header.rstrip() + "\n")
    parts.append("\n".join(plain + froms) + "\n")
    body = "\n\n".join(class_source(c) for c in classes)
    return "\n".join(parts) + "\n\n" + body
