"""Line layout for generated Python: the statements netdsl writes, laid out as `ruff format`
(and black) would lay them out, without needing either at run time.

Generated code is simple: assignments whose right-hand side is a call, a `+`/`*` chain, a list
or a name; `return a, b`; calls as statements; `def`/`class`/`if`/`else`/`for` headers. Each
statement is parsed with `ast` into a small layout tree of atoms, bracketed groups and operator
chains, and then laid out by ruff's rules for those shapes:

- a statement that fits in 88 columns stays on one line;
- otherwise the last bracket pair is split: its contents go on one indented line if they fit,
  else one item per line with a trailing comma, each item laid out the same way;
- for `target = value`, when the text before that bracket does not fit but `target = (` does,
  the value is wrapped in parentheses instead; when neither fits and the target is a tuple, the
  target is split (`(`, one name per line, `) = value`);
- operator chains are wrapped in parentheses with one operand per line.

Anything outside this subset stays on one line (ruff would not split it either: atoms only).
tests/test_compile.py checks these rules against ruff itself on random long names.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass, field

WIDTH = 88
INDENT = "    "


@dataclass
class Text:
    """An atom: never split."""

    text: str

    def flat(self) -> str:
        return self.text


@dataclass
class Group:
    """`prefix(items)`: a call, a parenthesised tuple, a list, or a bare tuple (`paren=False`:
    the brackets appear only when it is split, as for `return a, b` and `a, b = ...`)."""

    prefix: str
    open: str
    items: list = field(default_factory=list)
    close: str = ""
    paren: bool = True
    one_tuple: bool = False  # `(x,)`: the trailing comma is part of the syntax

    def flat(self) -> str:
        body = ", ".join(i.flat() for i in self.items) + ("," if self.one_tuple else "")
        if not self.paren:
            return body
        return f"{self.prefix}{self.open}{body}{self.close}"


@dataclass
class Keyword:
    """`name=value` inside a call."""

    name: str
    value: object

    def flat(self) -> str:
        return f"{self.name}={self.value.flat()}"


@dataclass
class DictItem:
    """`key: value` inside a dict."""

    key: object
    value: object

    def flat(self) -> str:
        return f"{self.key.flat()}: {self.value.flat()}"


@dataclass
class Chain:
    """`a + b + c`: one operator chain (split one operand per line, operator first)."""

    operands: list
    ops: list[str]

    def flat(self) -> str:
        out = self.operands[0].flat()
        for op, x in zip(self.ops, self.operands[1:]):
            out += f" {op} {x.flat()}"
        return out


def fits(indent: int, text: str) -> bool:
    return indent + len(text) <= WIDTH


def layout(node, indent: int, before: str = "", after: str = "") -> list[str]:
    """`before + node + after` at `indent` columns, as lines (without indentation for the first
    line's `before`; every line is returned fully indented)."""
    pad = " " * indent
    flat = before + node.flat() + after
    if fits(indent, flat):
        return [pad + flat]
    if isinstance(node, Keyword):
        return layout(node.value, indent, before + node.name + "=", after)
    if isinstance(node, DictItem):
        return layout(node.value, indent, before + node.key.flat() + ": ", after)
    if isinstance(node, Group) and node.items:
        return _split_group(node, indent, before, after)
    if isinstance(node, Chain):
        return _split_chain(node, indent, before, after)
    return [pad + flat]


def _split_group(g: Group, indent: int, before: str, after: str) -> list[str]:
    pad = " " * indent
    opener = before + (g.prefix + g.open if g.paren else "(")
    closer = (g.close if g.paren else ")") + after
    return [pad + opener, *_body(g, indent + 4), pad + closer]


def _body(g: Group, indent: int) -> list[str]:
    """The contents of a split bracket pair."""
    items = g.items
    if len(items) == 1 and not g.one_tuple:
        return layout(items[0], indent)
    if g.prefix and fits(indent, joined := ", ".join(i.flat() for i in items)):
        return [" " * indent + joined]  # call arguments: one line if they fit
    out: list[str] = []
    for item in items:
        out += layout(item, indent, after=",")
    return out


def _split_chain(c: Chain, indent: int, before: str, after: str) -> list[str]:
    pad = " " * indent
    inner = indent + 4
    lines = [pad + before + "("]
    if fits(inner, c.flat()):
        lines.append(" " * inner + c.flat())
    else:
        lines += layout(c.operands[0], inner)
        for op, x in zip(c.ops, c.operands[1:]):
            lines += layout(x, inner, before=f"{op} ")
    lines.append(pad + ")" + after)
    return lines


# ---- statements -----------------------------------------------------------------------------
def _node(e: ast.expr, src: str):
    """The layout tree of an expression (atoms keep their source text)."""
    text = ast.get_source_segment(src, e)
    if isinstance(e, ast.Call) and not any(isinstance(a, ast.Starred) for a in e.args) \
            and all(k.arg is not None for k in e.keywords) and (e.args or e.keywords):
        items = [_node(a, src) for a in e.args] + [Keyword(k.arg, _node(k.value, src)) for k in e.keywords]
        return Group(ast.get_source_segment(src, e.func), "(", items, ")")
    if isinstance(e, ast.List) and e.elts:
        return Group("", "[", [_node(x, src) for x in e.elts], "]")
    if isinstance(e, ast.Dict) and e.keys and all(k is not None for k in e.keys):
        items = [DictItem(_node(k, src), _node(v, src)) for k, v in zip(e.keys, e.values)]
        return Group("", "{", items, "}")
    if isinstance(e, ast.Tuple) and e.elts and text.startswith("("):
        return Group("", "(", [_node(x, src) for x in e.elts], ")", one_tuple=len(e.elts) == 1)
    if isinstance(e, ast.Subscript) and not isinstance(e.slice, ast.Slice | ast.Tuple):
        return Group(ast.get_source_segment(src, e.value), "[", [_node(e.slice, src)], "]")
    if isinstance(e, ast.BinOp):
        ops, operands = [], []
        kind = type(e.op)
        while isinstance(e, ast.BinOp) and type(e.op) is kind:
            operands.append(e.right)
            ops.append(_OPS[kind])
            e = e.left
        operands.append(e)
        if all(not (isinstance(x, ast.BinOp)) for x in operands):
            return Chain([_node(x, src) for x in reversed(operands)], list(reversed(ops)))
    return Text(text)


_OPS = {ast.Add: "+", ast.Mult: "*", ast.Sub: "-", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}


def _targets(e: ast.expr, src: str):
    if isinstance(e, ast.Tuple) and not ast.get_source_segment(src, e).startswith("("):
        return Group("", "(", [_node(x, src) for x in e.elts], ")", paren=False)
    return _node(e, src)


def format_statement(code: str, indent: int = 0, comment: str = "") -> list[str]:
    """One simple statement laid out at `indent` columns. A trailing comment (in `code` or given)
    stays on the line when the whole fits, else it goes on its own line above."""
    code, inline = _split_comment(code)
    comment = comment or inline
    pad = " " * indent
    out: list[str] = []
    if comment:
        if fits(indent, f"{code}  # {comment}"):
            return [f"{pad}{code}  # {comment}"]
        out.append(f"{pad}# {comment}")
    if fits(indent, code):
        return out + [pad + code]
    tree = ast.parse(code)
    stmt = tree.body[0]
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        out += _assign(_targets(stmt.targets[0], code), _node(stmt.value, code), indent)
    elif isinstance(stmt, ast.Return) and stmt.value is not None:
        value = _targets(stmt.value, code)
        if isinstance(value, Group) and not value.paren:
            out += layout(value, indent, "return ")
        else:
            out += _assign(None, value, indent, "return")
    elif isinstance(stmt, ast.Expr):
        out += layout(_node(stmt.value, code), indent)
    else:
        out.append(pad + code)
    return out


def _assign(target, value, indent: int, keyword: str = "") -> list[str]:
    """`target = value` that does not fit on one line, as ruff lays it out:
    1. split the value's own brackets, when the line that opens them fits;
    2. else wrap the value in parentheses, when every line then fits;
    3. else, for a tuple target, wrap the value when `target = (` fits, or else split the
       target (`(`, one name per line, `) = value`); for a single name, split the value's
       brackets anyway (or leave an unsplittable value alone)."""
    pad = " " * indent
    lhs = target.flat() if target is not None else ""
    eq = f"{lhs} = " if target is not None else keyword + " "
    split_value = None
    if isinstance(value, Group) and value.paren and value.items:
        split_value = _split_group(value, indent, eq, "")
        if fits(0, split_value[0]):
            return split_value
    if isinstance(value, Chain):
        wrapped = _split_chain(value, indent, eq, "")
    else:
        wrapped = [pad + f"{eq}(", *layout(value, indent + 4), pad + ")"]
    if _all_fit(wrapped):
        return wrapped
    if isinstance(target, Group) and not target.paren:
        if fits(indent, f"{lhs} = ("):
            return wrapped
        lines = [pad + "("]
        for item in target.items:
            lines += layout(item, indent + 4, after=",")
        return lines + layout(value, indent, ") = ")
    if split_value is not None:
        return split_value
    return wrapped if isinstance(value, Chain) else [pad + eq + value.flat()]


def _all_fit(lines: list[str]) -> bool:
    return all(len(line) <= WIDTH for line in lines)


def _split_comment(code: str) -> tuple[str, str]:
    """`x = f(y)  # note` -> ("x = f(y)", "note"), using the tokenizer (a `#` in a string is not
    a comment)."""
    if "#" not in code:
        return code, ""
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            return code[: tok.start[1]].rstrip(), tok.string[1:].strip()
    return code, ""


def format_literal(target: str, value, literal, indent: int = 0) -> list[str]:
    """`target = <value>` for plain data (dicts, lists, tuples, constants), the outer brackets
    always split one item per line (with the trailing comma that keeps ruff from joining
    them); `literal` writes constants."""
    pad = " " * indent
    tree = _data(value, literal)
    if not isinstance(tree, Group) or not tree.items:
        return [f"{pad}{target} = {tree.flat()}"]
    lines = [f"{pad}{target} = {tree.open}"]
    for item in tree.items:
        lines += layout(item, indent + 4, after=",")
    return lines + [pad + tree.close]


def _data(v, literal):
    if isinstance(v, dict):
        return Group("", "{", [DictItem(Text(literal(k)), _data(x, literal)) for k, x in v.items()], "}")
    if isinstance(v, list):
        return Group("", "[", [_data(x, literal) for x in v], "]")
    if isinstance(v, tuple) and v:
        return Group("", "(", [_data(x, literal) for x in v], ")", one_tuple=len(v) == 1)
    return Text(literal(v))


def format_header(keyword: str, name: str, items: list[str], indent: int, close: str = ":") -> list[str]:
    """`def name(items):` / `class Name(bases):`, split like a call when too long."""
    if not items:
        return [" " * indent + f"{keyword} {name}(){close}"]
    g = Group(f"{keyword} {name}", "(", [Text(i) for i in items], ")")
    lines = layout(g, indent, after=close)
    if keyword == "def" and len(items) == 1 and len(lines) == 3:
        lines[1] += ","  # ruff's magic trailing comma for a lone parameter
    return lines
