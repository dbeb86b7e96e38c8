"""Parsing: spec text -> AST (`syntax.ast`), syntax errors -> diagnostics."""

from __future__ import annotations

import functools
import threading
from importlib import resources
from pathlib import Path

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .._gc import paused
from ..diagnostics import NetdslError, Reporter, did_you_mean
from ..source import SourceFile, Span
from . import ast

GRAMMAR_NAME = "netdsl.lark"

# What the parser's token names mean to a user, for "expected ..." messages.
TOKEN_WORDS = {
    "NAME": "a name", "INT": "a number", "FLOAT": "a number", "STRING": "a string",
    "_NL": "end of line", "ARROW": "'->'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
    "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'", "COMMA": "','", "EQUAL": "'='",
    "COLON": "':'", "DOT": "'.'", "PLUS": "'+'", "MINUS": "'-'", "MUL_OP": "an operator",
    "COMP_OP": "a comparison", "POW_OP": "'**'", "TRUE": "'true'", "FALSE": "'false'",
    "NONE": "'none'", "WHERE": "'where'", "$END": "end of file",
}


def grammar_text() -> str:
    """The grammar: shipped inside the wheel, or read from the source tree's grammars/."""
    try:
        return resources.files("netdsl").joinpath(f"grammars/{GRAMMAR_NAME}").read_text("utf-8")
    except (FileNotFoundError, NotADirectoryError, OSError, TypeError):
        return (Path(__file__).resolve().parents[2] / "grammars" / GRAMMAR_NAME).read_text("utf-8")


class _Newlines:
    """Post-lexer: a newline ends a statement only at bracket depth 0, and not next to
    `->`, after `{` or `,`. A `}` always ends the statement before it."""

    always_accept = ("_NL",)

    def process(self, stream):
        depth = 0
        last = None  # type of the last token emitted
        pending = None  # a newline held back until we see what follows it
        for tok in stream:
            t = tok.type
            if t == "_NL":
                if depth == 0 and last not in (None, "_NL", "LBRACE", "COMMA", "ARROW"):
                    pending = pending or tok
                continue
            if pending is not None:
                if t not in ("ARROW", "RBRACE"):
                    yield pending
                    last = "_NL"
                pending = None
            if t in ("LPAR", "LSQB"):
                depth += 1
            elif t in ("RPAR", "RSQB"):
                depth = max(0, depth - 1)
            elif t == "RBRACE":
                depth = 0
                if last not in ("_NL", "LBRACE"):
                    yield Token.new_borrow_pos("_NL", "", tok)
            yield tok
            last = t
        if pending is not None:
            yield pending


_BUILD = None


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    """The grammar's LALR parser with `_Build` as its callbacks: the AST as Lark reduces, no
    tree and no second pass (on 20,000 statements Lark's tree and position bookkeeping were
    most of the parse)."""
    global _BUILD
    _BUILD = _Build()
    return Lark(grammar_text(), parser="lalr", lexer="basic", postlex=_Newlines(),
                keep_all_tokens=True, maybe_placeholders=False, transformer=_BUILD)


_LOCK = threading.Lock()  # one _Build serves every parse


def _parse(text: str, filename: str) -> ast.File:
    source = SourceFile(filename, text)
    parser = _parser()
    with _LOCK:
        _BUILD.reset(source)
        try:
            file = parser.parse(text)
        except UnexpectedInput as exc:
            raise NetdslError([_syntax_diagnostic(source, exc)]) from None
        rep = _BUILD.rep
        _BUILD.reset(None)
    rep.check()
    return file


def parse(text: str, filename: str = "<string>") -> ast.File:
    """Parse spec text into an AST; raise NetdslError with a diagnostic on a syntax error."""
    with paused():  # see _gc.py: linear time on large specs
        return _parse(text, filename)


MAX_INT_DIGITS = 40  # far beyond any size or count; Python refuses int() past 4,300 digits
MAX_DEPTH = 200  # nesting of expressions; deeper would exhaust Python's stack in the passes


def parse_expression(text: str, filename: str = "<string>") -> ast.Expr:
    """Parse one expression (used for `--set key=value` overrides)."""
    file = parse(f"train _ {{\n_ = {text}\n}}\n", filename)
    return file.definitions[0].settings[0].value


# Tokens that may start an expression, and tokens that may only continue one: when a parser
# error lists them all, the message says "an expression" or leaves the operators out.
EXPR_START = {"LPAR", "MINUS", "LSQB", "FALSE", "NONE", "NOT", "TRUE", "NAME", "INT", "FLOAT", "STRING"}
CONTINUATION = {"POW_OP", "PLUS", "MINUS", "DOT", "LSQB", "LPAR", "AND", "OR", "AS", "IF", "ELSE",
                "COMP_OP", "MUL_OP", "ARROW"}
KEYWORDS = ("model", "block", "train", "input", "output", "if", "else", "as", "and", "or", "not")
OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
CLOSERS = {v: k for k, v in OPENERS.items()}


def _syntax_diagnostic(source: SourceFile, exc: UnexpectedInput):
    """One diagnostic for a Lark error, phrased for people: unclosed and unmatched brackets are
    named where they are, misspelt keywords get a did-you-mean, long expected-lists are folded."""
    rep = Reporter()
    if isinstance(exc, UnexpectedCharacters):
        line, col = max(1, exc.line), max(1, exc.column)
        ch = source.text[exc.pos_in_stream] if exc.pos_in_stream < len(source.text) else ""
        hint = None
        if ch in "\"'":
            hint = "strings must close on the same line"
        elif ch == ">" and exc.pos_in_stream > 0 and source.text[exc.pos_in_stream - 1] == "=":
            hint = "did you mean '->'?"
        elif ch == ";":
            hint = "a statement ends at the end of its line; no ';' is needed"
        elif ch == "!":
            hint = "negation is written 'not'"
        elif ch in "&|":
            hint = "logic is written 'and' and 'or'"
        shown = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"
        return rep.error("E002", f"unexpected character {shown}", Span(source, line, col, line, col + 1),
                         hint)
    at_end = isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END")
    expected_names = set(getattr(exc, "accepts", None) or getattr(exc, "expected", None) or ())
    tokens = _tokens_before(source.text, None if at_end else exc.token)
    open_stack = _open_brackets(tokens)
    if at_end:
        if open_stack:
            opener = open_stack[-1]
            last = source.text.rstrip().count("\n") + 1
            return rep.error("E003", f"unexpected end of file: this '{opener}' is never closed",
                             _tspan(source, opener),
                             f"add '{_close_char(opener)}' (the file ends at line {last})")
        last = source.text.rstrip("\n").count("\n") + 1
        end = len(source.line(last)) + 1
        expected = _expected(expected_names)
        return rep.error("E003", "unexpected end of file" + (f"; expected {expected}" if expected else ""),
                         Span(source, last, end, last, end + 1))
    tok = exc.token
    line, col = max(1, tok.line or 1), max(1, tok.column or 1)
    inserted = tok.type == "_NL" and not str(tok)  # the newline we insert before '}'
    if tok.type == "_NL":
        text, width = ("'}'" if inserted else "end of line"), 1
    else:
        text, width = repr(str(tok)), max(1, len(str(tok)))
    span = Span(source, line, col, line, col + width)
    prev = tokens[-1] if tokens else None
    # brackets first: most "unexpected X" errors are really a bracket left open or one too many
    if tok.type in CLOSERS and not any(t.type == CLOSERS[tok.type] for t in open_stack[-1:]):
        if open_stack and open_stack[-1].type != "LBRACE":
            o = open_stack[-1]
            return rep.error("E001", f"'{tok}' does not match the '{o}' at line {o.line}, column {o.column}",
                             span, f"close the '{o}' with '{_close_char(o)}' first")
        return rep.error("E001", f"unmatched '{tok}'", span,
                         f"remove it, or add the missing '{ {')': '(', ']': '[', '}': '{'}[str(tok)]}'")
    if open_stack and open_stack[-1].type != "LBRACE" and tok.line and open_stack[-1].line < tok.line \
            and prev is not None and prev.end_line < tok.line and prev.type not in ("COMMA", "LPAR", "LSQB"):
        o = open_stack[-1]
        return rep.error("E001", f"this '{o}' is never closed", _tspan(source, o),
                         f"close it with '{_close_char(o)}' on line {prev.end_line}; the next line "
                         f"({text} at {line}:{col}) cannot continue it")
    expected = _expected(expected_names)
    msg = f"unexpected {text}" + (f"; expected {expected}" if expected else "")
    hint = None
    word = str(tok)
    top_level = {"MODEL", "BLOCK", "TRAIN"} <= expected_names
    if top_level and tok.type == "NAME":
        hint = did_you_mean(word, ["model", "block", "train"]) or \
            "a file holds definitions: model NAME { ... }, block NAME(...) { ... }, train NAME { ... }"
    elif "NAME" in expected_names and word in KEYWORDS:
        hint = f"'{word}' is a keyword and cannot be used as a name"
    elif prev is not None and prev.type == "NAME" and tok.type == "NAME" and _line_start(tokens) \
            and did_you_mean(str(prev), ["input", "output"]):
        hint = did_you_mean(str(prev), ["input", "output"])
    elif str(tok) == ">" and prev is not None and str(prev) == "=" and prev.end_pos == tok.start_pos:
        hint = "did you mean '->'?"
    elif tok.type == "_NL" and "RPAR" in expected_names:
        hint = "is a ')' missing?"
    elif tok.type in ("NAME", "INT", "FLOAT", "STRING", "LPAR") and "_NL" in expected_names:
        hint = "each statement goes on its own line; did you forget '->' between steps?"
    elif tok.type == "LBRACE" and prev is not None and prev.type in ("MODEL", "BLOCK", "TRAIN"):
        hint = f"a {prev} needs a name: {prev} Net {{"
    return rep.error("E001", msg, span, hint)


def _tspan(source: SourceFile, tok: Token) -> Span:
    return Span(source, tok.line, tok.column, tok.line, tok.column + max(1, len(str(tok))))


def _close_char(opener: Token) -> str:
    return {"(": ")", "[": "]", "{": "}"}[str(opener)]


def _tokens_before(text: str, stop: Token | None) -> list[Token]:
    """The tokens before `stop` (all of them if None), as far as the text can be lexed."""
    out: list[Token] = []
    try:
        for t in _parser().lex(text):
            if stop is not None and t.start_pos is not None and stop.start_pos is not None \
                    and t.start_pos >= stop.start_pos:
                break
            if t.type == "_NL" and not str(t):
                continue
            out.append(t)
    except UnexpectedInput:
        pass
    return out


def _open_brackets(tokens: list[Token]) -> list[Token]:
    stack: list[Token] = []
    for t in tokens:
        if t.type in OPENERS:
            stack.append(t)
        elif t.type in CLOSERS:
            if t.type == "RBRACE":  # a '}' ends everything opened inside its block
                while stack and stack[-1].type != "LBRACE":
                    stack.pop()
            if stack and stack[-1].type == CLOSERS[t.type]:
                stack.pop()
    return stack


def _line_start(tokens: list[Token]) -> bool:
    """Whether the last token is the first on its line."""
    return len(tokens) < 2 or tokens[-2].end_line < tokens[-1].line or tokens[-2].type == "_NL"


def _expected(names) -> str:
    names = {n for n in names if not n.startswith("__")}
    if {"MODEL", "BLOCK", "TRAIN"} <= names:
        return "'model', 'block' or 'train'"
    if {"INPUT", "OUTPUT"} <= names:
        return "a statement (input, output, or name = ...)" + (" or '}'" if "RBRACE" in names else "")
    words = []
    if {"NAME", "INT"} <= names:  # every way to start an expression: say so once
        rest = names - EXPR_START - CONTINUATION
        words = ["an expression"]
    else:
        rest = names - CONTINUATION if names - CONTINUATION else names
    words = sorted({TOKEN_WORDS.get(n, f"'{n.lower()}'" if n.isalpha() else n) for n in rest}) + words
    if not words:
        return ""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


class _Seq(list):
    """A rule's items that are not an AST node (parameters, arguments), with the rule's place."""

    box: tuple[int, int, int, int] = (0, 0, 0, 0)


class _Build:
    """Parser callbacks: each rule's children (every token kept, no placeholders) -> the AST,
    as Lark reduces it; no parse tree is built. Purely structural: no name or layer is looked
    up here. Spans follow Lark's `propagate_positions`: a node runs from the start of its first
    child to the end of its last, where a child that came out of brackets or a statement line
    (returned as it is) counts with them (`box`)."""

    def __init__(self):
        self.source: SourceFile | None = None
        self.rep = Reporter()
        self.box: dict[int, tuple[int, int, int, int]] = {}  # id(node) -> its container
        self.depth: dict[int, int] = {}  # id(expression node) -> nesting below it, itself 1

    def reset(self, source: SourceFile) -> None:
        self.source, self.rep, self.box, self.depth = source, Reporter(), {}, {}

    # positions ---------------------------------------------------------------------------
    def _box(self, x):
        if isinstance(x, Token):
            return (x.line, x.column, x.end_line, x.end_column)
        if isinstance(x, _Seq):
            return x.box
        got = self.box.get(id(x))
        if got is not None:
            return got
        sp = x.span
        return (sp.line, sp.col, sp.end_line, sp.end_col)

    def _span(self, c) -> Span:
        first, last = self._box(c[0]), self._box(c[-1])
        return Span(self.source, first[0], first[1], last[2], last[3])

    def _tspan(self, tok: Token) -> Span:
        return Span(self.source, tok.line, tok.column, tok.end_line, tok.end_column)

    def _seq(self, c, items) -> _Seq:
        out = _Seq(items)
        first, last = self._box(c[0]), self._box(c[-1])
        out.box = (first[0], first[1], last[2], last[3])
        return out

    def _nest(self, node, *children):
        """Record how deeply `node` nests (for MAX_DEPTH) and return it."""
        d = 0
        for ch in children:
            if isinstance(ch, list):
                d = max(d, 1 + max((self.depth.get(id(x), 1) for x in ch), default=0))
            elif ch is not None:
                d = max(d, self.depth.get(id(ch), 1))
        self.depth[id(node)] = d + 1
        return node

    def _shallow(self, expr) -> None:
        """An expression nested more than MAX_DEPTH levels is an error at its start (the
        passes recurse through it)."""
        if expr is not None and self.depth.get(id(expr), 1) > MAX_DEPTH + 1:
            sp = expr.span
            raise NetdslError([Reporter().error(
                "E001", f"this expression nests more than {MAX_DEPTH} levels deep",
                Span(self.source, sp.line, sp.col, sp.line, sp.col + 1),
                "split it into several statements")])

    @staticmethod
    def _nodes(c) -> list:
        return [x for x in c if not isinstance(x, Token)]

    # definitions -------------------------------------------------------------------------
    def start(self, c):
        return ast.File(self.source, self._nodes(c))

    def model_def(self, c):
        return ast.ModelDef(self._span(c), str(c[1]), self._tspan(c[1]), self._nodes(c[3:-1]))

    def block_def(self, c):
        has_params = isinstance(c[2], _Seq)
        params = list(c[2]) if has_params else []
        body = self._nodes(c[4 if has_params else 3:-1])
        return ast.BlockDef(self._span(c), str(c[1]), self._tspan(c[1]), params, body)

    def train_def(self, c):
        return ast.TrainDef(self._span(c), str(c[1]), self._tspan(c[1]), self._nodes(c[3:-1]))

    def params(self, c):
        return self._seq(c, self._nodes(c))

    def param(self, c):
        default = c[2] if len(c) > 2 else None
        self._shallow(default)
        return ast.Param(self._span(c), str(c[0]), default)

    def setting(self, c):
        key, key_span = c[0]
        self._shallow(c[2])
        return ast.Setting(self._span(c), key, key_span, c[2])

    def dotted(self, c):
        out = _Seq([[str(t) for t in c if t.type == "NAME"], self._span(c)])
        out.box = self._box(c[0])[:2] + self._box(c[-1])[2:]
        return out

    # statements --------------------------------------------------------------------------
    def statement(self, c):
        node = c[0]
        self.box[id(node)] = self._box(c[0])[:2] + self._box(c[-1])[2:]
        return node

    def input_stmt(self, c):
        name, i, shape, dtype = c[1], 2, None, None
        if i < len(c) and c[i].type == "COLON":
            shape, i = c[i + 1], i + 2
            if i < len(c) and isinstance(c[i], Token) and c[i].type == "NAME":
                dtype, i = ast.Name(self._tspan(c[i]), str(c[i])), i + 1
        where = self._nodes(c[i:])
        for e in (shape, *where):
            self._shallow(e)
        return ast.Input(self._span(c), str(name), self._tspan(name), shape, dtype, where)

    def output_stmt(self, c):
        items = self._nodes(c)
        return ast.Output(self._span(c), [v for v, _ in items], [a for _, a in items])

    def output_item(self, c):
        value, annotation = c[0], (c[2] if len(c) > 2 else None)
        self._shallow(value)
        self._shallow(annotation)
        return self._seq(c, [value, annotation])

    def assign_stmt(self, c):
        *targets, value = self._nodes(c)
        self._shallow(value)
        return ast.Assign(self._span(c), targets, value)

    def expr_stmt(self, c):
        self._shallow(c[0])
        return ast.ExprStmt(self._span(c), c[0])

    def target(self, c):
        annotation = c[2] if len(c) > 2 else None
        self._shallow(annotation)
        return ast.Target(self._tspan(c[0]), str(c[0]), annotation)

    # expressions -------------------------------------------------------------------------
    def conditional(self, c):
        then, test, other = c[0], c[2], c[4]
        return self._nest(ast.Conditional(self._span(c), then, test, other), then, test, other)

    def chain(self, c):
        head, *rest = c
        steps = [s if isinstance(s, ast.Step) else self._nest(ast.Step(s.span, s), s)
                 for s in rest if not isinstance(s, Token)]
        return self._nest(ast.Chain(self._span(c), head, steps), head, *steps)

    def named_step(self, c):
        expr, alias = c[0], c[2]
        return self._nest(ast.Step(self._span(c), expr, str(alias), self._tspan(alias)), expr)

    def or_(self, c):
        return self._nest(ast.BoolOp(self._span(c), "or", c[0], c[2]), c[0], c[2])

    def and_(self, c):
        return self._nest(ast.BoolOp(self._span(c), "and", c[0], c[2]), c[0], c[2])

    def not_(self, c):
        return self._nest(ast.Not(self._span(c), c[1]), c[1])

    def compare(self, c):
        return self._nest(ast.Compare(self._span(c), str(c[1]), c[0], c[2]), c[0], c[2])

    def binop(self, c):
        return self._nest(ast.BinOp(self._span(c), str(c[1]), c[0], c[2]), c[0], c[2])

    def neg(self, c):
        return self._nest(ast.Neg(self._span(c), c[-1]), c[-1])

    def call(self, c):
        func = c[0]
        arguments = c[2] if isinstance(c[2], _Seq) else []
        args, kwargs = [], []
        for a in arguments:
            if kwargs and not isinstance(a, ast.Kwarg):
                self.rep.error("E001", "a positional argument cannot follow a keyword argument",
                               a.span, f"move it before '{kwargs[0].name}=', or name it")
            (kwargs if isinstance(a, ast.Kwarg) else args).append(a)
        return self._nest(ast.Call(self._span(c), func, args, kwargs), func, list(arguments))

    def arguments(self, c):
        return self._seq(c, self._nodes(c))

    def kwarg(self, c):
        name, value = c[0], c[2]
        return self._nest(ast.Kwarg(self._span(c), str(name), self._tspan(name), value), value)

    def attribute(self, c):
        return self._nest(ast.Attribute(self._span(c), c[0], str(c[2])), c[0])

    def index(self, c):
        return self._nest(ast.Index(self._span(c), c[0], c[2]), c[0], c[2])

    def atom(self, c):  # "(" expr ")": the expression, its brackets counted as its container
        node = c[1]
        self.box[id(node)] = self._box(c[0])[:2] + self._box(c[-1])[2:]
        return node

    def name(self, c):
        return ast.Name(self._span(c), str(c[0]))

    def int_(self, c):
        digits = str(c[0]).replace("_", "")
        if len(digits) > MAX_INT_DIGITS:  # int() of a huge literal is slow, then refuses
            self.rep.error("E001", f"this number has {len(digits)} digits; netdsl takes at most "
                           f"{MAX_INT_DIGITS}", self._span(c))
            return ast.Num(self._span(c), 0)
        return ast.Num(self._span(c), int(digits))

    def float_(self, c):
        return ast.Num(self._span(c), float(str(c[0]).replace("_", "")))

    def string(self, c):
        body = str(c[0])[1:-1]
        value = body.encode("latin-1", "backslashreplace").decode("unicode_escape") \
            if "\\" in body else body
        return ast.Str(self._span(c), value)

    def true(self, c):
        return ast.Const(self._span(c), True)

    def false(self, c):
        return ast.Const(self._span(c), False)

    def none(self, c):
        return ast.Const(self._span(c), None)

    def tuple(self, c):
        items = self._nodes(c)
        return self._nest(ast.TupleExpr(self._span(c), items), *items)

    def list(self, c):
        items = self._nodes(c)
        return self._nest(ast.ListExpr(self._span(c), items), *items)
