"""`netdsl fmt`: spec text in one canonical layout, from its AST, every comment kept.

The layout is the README's: two spaces of indentation, one blank line between definitions and
at most one where the source had any between statements, spaces around operators (not around
`=` of a keyword argument), numbers and strings exactly as written. A chain that does not fit
in `WIDTH` columns is broken before `->` and filled line by line, each continuation starting
under the first `->`. Parentheses are the ones the grammar needs, no more.

Comments: one on a line of its own stays above what follows it (or before the `}` it precedes);
one after code stays after that line's code: at the end of its statement, or after the chain
step its line ends with (the chain then breaks there). Formatting reads the AST only, so it
cannot change what a spec means; it is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ast
from .parser import parse

WIDTH = 100
INDENT = "  "

# binding strength, loosest first (grammar: ternary, chain, or, and, not, comparison, sum,
# term, unary minus, power, postfix, atom)
COND, CHAIN, OR, AND, NOT, COMPARE, SUM, TERM, NEG, POWER, POSTFIX, ATOM = range(12)
TERM_OPS = {"*", "/", "//", "%", "@"}


@dataclass
class Comment:
    line: int
    col: int
    text: str
    own_line: bool


def comments(text: str) -> list[Comment]:
    """Every `# ...` outside a string, with its place (strings never span lines)."""
    out = []
    for n, line in enumerate(text.split("\n"), start=1):
        quote, i = None, 0
        while i < len(line):
            ch = line[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                out.append(Comment(n, i + 1, line[i:].rstrip(), not line[:i].strip()))
                break
            i += 1
    return out


def format_text(text: str, filename: str = "<string>") -> str:
    """The canonical layout of spec text (raises NetdslError if it does not parse)."""
    file = parse(text, filename)
    return _Printer(file, text).file()


MARK = "\ue000"  # private use: marks where a trailing comment goes, and its old column


def _place(line: str) -> str:
    if MARK not in line:
        return line
    code, col, text = line.split(MARK, 2)
    code = code.rstrip()
    return code + " " * max(2, int(col) - 1 - len(code)) + text


def _end(node) -> int:
    """The last line of a statement or setting (a setting's span takes in its newline)."""
    if isinstance(node, ast.Setting):
        return node.value.span.end_line
    return node.span.end_line


class _Printer:
    def __init__(self, file: ast.File, text: str):
        self.file_ast, self.text = file, text
        self.lines = text.split("\n")
        found = comments(text)  # in line order
        self.trailing = {c.line: c for c in found if not c.own_line}  # after a line's code
        self.own = [c for c in found if c.own_line]  # not printed yet
        self.used: set[int] = set()  # lines whose trailing comment was printed

    # comments ------------------------------------------------------------------------------
    def _take_own(self, before_line: int) -> list[Comment]:
        """Own-line comments above `before_line` not printed yet."""
        out = [c for c in self.own if c.line < before_line]
        self.own = [c for c in self.own if c.line >= before_line]
        return out

    def _emit_own(self, out: list[str], before_line: int, indent: str) -> None:
        """Write the own-line comments above `before_line` (with the blanks between them)."""
        taken = self._take_own(before_line)
        prev = None
        for c in taken:
            if prev is not None and c.line > prev + 1 and out and out[-1] != "":
                out.append("")
            out.append(indent + c.text)
            prev = c.line

    def _trail(self, line: int) -> str:
        """The comment after the code of source line `line` (once), marked with the column it
        stood at: `_place` keeps it there where the code still leaves room (aligned columns of
        comments stay aligned), else two spaces after the code."""
        c = self.trailing.get(line)
        if c is None or line in self.used:
            return ""
        self.used.add(line)
        return f"{MARK}{c.col}{MARK}{c.text}"

    def _interior(self, node) -> str:
        """Trailing comments on lines inside a node that nothing else printed, as one."""
        texts = []
        for line in range(node.span.line, _end(node) + 1):
            t = self._trail(line)
            if t:
                texts.append(t.split(MARK)[-1])
        return f"{MARK}0{MARK}" + "  ".join(texts) if texts else ""

    # the file ------------------------------------------------------------------------------
    def file(self) -> str:
        out: list[str] = []
        for i, d in enumerate(self.file_ast.definitions):
            if i and out and out[-1] != "":
                out.append("")
            above = [c.line for c in self.own if c.line < d.span.line]
            self._emit_own(out, d.span.line, "")
            if above and self._blank_between(max(above), d.span.line):
                out.append("")
            out += self.definition(d)
        self._emit_own(out, len(self.lines) + 1, "")
        while out and out[-1] == "":
            out.pop()
        return "\n".join(_place(line) for line in "\n".join(out).split("\n")) + "\n" \
            if out else ""

    def definition(self, d) -> list[str]:
        if isinstance(d, ast.ModelDef):
            head, items = f"model {d.name}", d.body
        elif isinstance(d, ast.BlockDef):
            params = ", ".join(p.name if p.default is None else f"{p.name} = {self.expr(p.default)}"
                               for p in d.params)
            head, items = f"block {d.name}" + (f"({params})" if d.params else ""), d.body
        else:
            head, items = f"train {d.name}", d.settings
        out = [f"{head} {{" + self._trail(d.span.line)]
        prev_end = None
        for item in items:
            above = [c.line for c in self.own if c.line < item.span.line]
            if prev_end is not None and self._blank_between(prev_end, min(above,
                                                                         default=item.span.line)):
                out.append("")
            self._emit_own(out, item.span.line, INDENT)
            if above and self._blank_between(max(above), item.span.line):
                out.append("")
            out += self.statement(item)
            prev_end = _end(item)
        self._emit_own(out, d.span.end_line, INDENT)
        out.append("}" + self._trail(d.span.end_line))
        return out

    def _blank_between(self, end_line: int, start_line: int) -> bool:
        return any(not self.lines[n - 1].strip() for n in range(end_line + 1, start_line))

    # statements ----------------------------------------------------------------------------
    def statement(self, s) -> list[str]:
        if isinstance(s, ast.Input):
            text = f"input {s.name}"
            if s.shape is not None:
                text += f": {self.expr(s.shape)}" + (f" {s.dtype.id}" if s.dtype else "")
            if s.where:
                text += " where " + ", ".join(self.expr(w) for w in s.where)
            return self._line(INDENT + text, s)
        if isinstance(s, ast.Output):
            items = [self.expr(v) + (f": {self.expr(a)}" if a is not None else "")
                     for v, a in zip(s.values, s.annotations, strict=False)]
            if len(s.values) == 1 and s.annotations[0] is None:
                return self._top(INDENT + "output ", s.values[0], s)
            return self._line(INDENT + "output " + ", ".join(items), s)
        if isinstance(s, ast.Assign):
            targets = ", ".join(t.name + (f": {self.expr(t.annotation)}" if t.annotation else "")
                                for t in s.targets)
            return self._top(INDENT + targets + " = ", s.value, s)
        if isinstance(s, ast.ExprStmt):
            return self._top(INDENT, s.expr, s)
        if isinstance(s, ast.Setting):
            return self._top(INDENT + ".".join(s.key) + " = ", s.value, s)
        raise TypeError(f"cannot format {type(s).__name__}")

    def _line(self, text: str, node) -> list[str]:
        return [text + self._trail(_end(node)) + self._interior(node)]

    def _top(self, prefix: str, e, node) -> list[str]:
        """A statement's expression: a chain (or a conditional whose first branch is one)
        broken to the width and at its comments; anything else on one line."""
        chain, tail = e, ""
        if isinstance(e, ast.Conditional) and isinstance(e.then, ast.Chain):
            chain = e.then
            tail = f" if {self.expr(e.test, OR)} else {self.expr(e.other, COND)}"
        if not isinstance(chain, ast.Chain):
            text = prefix + self.layout(e, len(prefix))
            lines = text.split("\n")
            lines[-1] += self._trail(_end(node)) + self._interior(node)
            return lines
        head = self.expr(chain.head, OR)
        steps = [(self.step(s), s.span.end_line) for s in chain.steps]
        last = _end(node)
        last_on = {end: i for i, (_, end) in enumerate(steps)}  # the last step ending on a line
        breaks = {i for end, i in last_on.items()
                  if end in self.trailing and end not in self.used and end < last}
        head_break = chain.head.span.end_line in self.trailing and \
            chain.head.span.end_line < chain.steps[0].span.line
        notes = {i: [c for c in self.own if c.line < s.span.line and c.line > node.span.line]
                 for i, s in enumerate(chain.steps)}  # own-line comments between the steps
        flat = prefix + head + "".join(f" -> {t}" for t, _ in steps) + tail
        authored = chain.steps[-1].span.line > chain.head.span.end_line  # broken in the source
        if len(flat) <= WIDTH and not breaks and not head_break and not any(notes.values()) \
                and not authored:
            return self._line(flat, node)
        # continuation lines start under the first `->`, unless a step would not fit there
        # (then two columns in from the statement)
        first_arrow = len(prefix) + len(head) + 1
        fits = all(first_arrow + 3 + len(t) + len(tail) <= WIDTH for t, _ in steps)
        indent = " " * (first_arrow if fits else 2 * len(INDENT))
        out, line = [], prefix + head
        if head_break:
            out.append(line + self._trail(chain.head.span.end_line))
            line = ""
        for i, (_, end) in enumerate(steps):
            mine = [c for c in notes[i] if c in self.own]
            if mine:
                if line:
                    out.append(line)
                    line = ""
                out += [indent + c.text for c in mine]
                self.own = [c for c in self.own if c not in mine]
            s = chain.steps[i]
            rest = (f" as {s.alias}" if s.alias else "") + (tail if i == len(steps) - 1 else "")

            def piece(col, s=s, rest=rest):  # the step laid out from column `col`
                return "-> " + self.layout(s.expr, col + 3, OR, rest)

            starts_line = i and s.span.line > chain.steps[i - 1].span.end_line
            here = piece(len(line) + 1) if line else None
            if line and not starts_line and len(line) + 1 + len(here.split("\n")[0]) <= WIDTH:
                line += " " + here  # fits after what is on the line
            else:  # a break the author made stays; else the line is full
                if line:
                    out.append(line)
                line = indent + piece(len(indent))
            if "\n" in line:  # the step broke inside its brackets: its lines are done
                *done, line = line.split("\n")
                out += done
            if i in breaks:
                out.append(line + self._trail(end))
                line = ""
        if line:
            out.append(line)
        out[-1] += self._trail(last) + self._interior(node)
        return out

    def layout(self, e, col: int, least: int = COND, suffix: str = "") -> str:
        """`e` as text starting at column `col`, followed by `suffix`: on one line when it
        fits in WIDTH, else a call, list or tuple breaks between its items, filling each line
        and aligning the next under its first item (the items laid out the same way)."""
        flat = self.expr(e, least)
        if self._strength(e) < least:
            return flat + suffix
        spans = []  # where each item began and ended in the source
        if isinstance(e, ast.Call) and (e.args or e.kwargs):
            open_, close = self.expr(e.func, POSTFIX) + "(", ")"
            items = [("", a) for a in e.args] + [(f"{k.name}=", k.value) for k in e.kwargs]
            spans = [a.span for a in e.args] + [k.span for k in e.kwargs]
        elif isinstance(e, (ast.ListExpr, ast.TupleExpr)) and e.items:
            open_ = "[" if isinstance(e, ast.ListExpr) else "("
            close = "]" if isinstance(e, ast.ListExpr) else ("," if len(e.items) == 1 else "") + ")"
            items = [("", i) for i in e.items]
            spans = [i.span for i in e.items]
        else:
            return flat + suffix
        # a break the author made between items stays
        authored = {n for n in range(1, len(spans)) if spans[n].line > spans[n - 1].end_line}
        if col + len(flat) + len(suffix) <= WIDTH and not authored:
            return flat + suffix
        inner = col + len(open_)
        text = open_
        for n, (key, item) in enumerate(items):
            end = ", " if n < len(items) - 1 else close + suffix
            # the column reached: a continuation line carries its own indentation
            at = len(text.rsplit("\n", 1)[-1]) if "\n" in text else col + len(text)
            piece = key + self.expr(item) + end.rstrip()
            if n in authored or not text.endswith(open_) and at + len(piece) > WIDTH:
                text = text.rstrip() + "\n" + " " * inner
                at = inner
            text += key + self.layout(item, at + len(key), COND, end if n == len(items) - 1
                                      else ",") + ("" if n == len(items) - 1 else " ")
        return text.rstrip(" ")

    def _strength(self, e) -> int:
        return self._expr(e)[1]

    def step(self, s: ast.Step) -> str:
        text = self.expr(s.expr, OR)
        return f"{text} as {s.alias}" if s.alias else text

    # expressions ---------------------------------------------------------------------------
    def expr(self, e, least: int = COND) -> str:
        text, strength = self._expr(e)
        return f"({text})" if strength < least else text

    def _source(self, e) -> str:
        sp = e.span
        if sp.line == sp.end_line:
            return self.lines[sp.line - 1][sp.col - 1:sp.end_col - 1]
        raise ValueError("a literal spans lines")

    def _expr(self, e) -> tuple[str, int]:
        if isinstance(e, ast.Name):
            return e.id, ATOM
        if isinstance(e, (ast.Num, ast.Str, ast.Const)):
            return self._source(e), ATOM
        if isinstance(e, ast.TupleExpr):
            items = [self.expr(i) for i in e.items]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")", ATOM
        if isinstance(e, ast.ListExpr):
            return "[" + ", ".join(self.expr(i) for i in e.items) + "]", ATOM
        if isinstance(e, ast.Call):
            args = [self.expr(a) for a in e.args]
            args += [f"{k.name}={self.expr(k.value)}" for k in e.kwargs]
            return f"{self.expr(e.func, POSTFIX)}({', '.join(args)})", POSTFIX
        if isinstance(e, ast.Attribute):
            return f"{self.expr(e.value, POSTFIX)}.{e.name}", POSTFIX
        if isinstance(e, ast.Index):
            return f"{self.expr(e.value, POSTFIX)}[{self.expr(e.index)}]", POSTFIX
        if isinstance(e, ast.BinOp):
            if e.op == "**":  # right-associative; its right side may be negative
                return f"{self.expr(e.left, POSTFIX)} ** {self.expr(e.right, NEG)}", POWER
            own = TERM if e.op in TERM_OPS else SUM
            return f"{self.expr(e.left, own)} {e.op} {self.expr(e.right, own + 1)}", own
        if isinstance(e, ast.Neg):
            return f"-{self.expr(e.operand, NEG)}", NEG
        if isinstance(e, ast.Compare):
            return f"{self.expr(e.left, SUM)} {e.op} {self.expr(e.right, SUM)}", COMPARE
        if isinstance(e, ast.Not):
            return f"not {self.expr(e.operand, NOT)}", NOT
        if isinstance(e, ast.BoolOp):
            own = OR if e.op == "or" else AND
            return f"{self.expr(e.left, own)} {e.op} {self.expr(e.right, own + 1)}", own
        if isinstance(e, ast.Chain):
            steps = "".join(f" -> {self.step(s)}" for s in e.steps)
            return self.expr(e.head, OR) + steps, CHAIN
        if isinstance(e, ast.Conditional):
            return (f"{self.expr(e.then, CHAIN)} if {self.expr(e.test, OR)} else "
                    f"{self.expr(e.other, COND)}"), COND
        if isinstance(e, ast.Step):
            return self.step(e), CHAIN
        raise TypeError(f"cannot format {type(e).__name__}")
