"""Parsing: spec text -> AST (`syntax.ast`), syntax errors -> diagnostics."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
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


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    return Lark(grammar_text(), parser="lalr", lexer="basic", propagate_positions=True, postlex=_Newlines(),
                maybe_placeholders=True)


def parse(text: str, filename: str = "<string>") -> ast.File:
    """Parse spec text into an AST; raise NetdslError with a diagnostic on a syntax error."""
    with paused():  # see _gc.py: linear time on large specs
        return _parse(text, filename)


def _parse(text: str, filename: str) -> ast.File:
    source = SourceFile(filename, text)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise NetdslError([_syntax_diagnostic(source, exc)]) from None
    _check_depth(source, tree)
    builder = _ToAst(source)
    file = builder.transform(tree)
    builder.rep.check()
    return file


MAX_INT_DIGITS = 40  # far beyond any size or count; Python refuses int() past 4,300 digits
MAX_DEPTH = 200  # nesting of expressions; deeper would exhaust Python's stack in the passes


def _check_depth(source: SourceFile, tree) -> None:
    """Reject absurdly deep expressions (`1+1+...+1` a thousand times) with a diagnostic,
    before the recursive passes would fail on them. Iterative, so it cannot overflow itself."""
    structure = {"start", "model_def", "block_def", "train_def", "params", "param", "input_stmt",
                 "output_stmt", "assign_stmt", "expr_stmt", "setting", "dotted", "target"}
    stack = [(tree, 0, None)]
    while stack:
        node, depth, anchor = stack.pop()  # anchor: the outermost expression around node
        if anchor is None and node.data not in structure:
            anchor, depth = node, 0
        if depth > MAX_DEPTH:
            meta = anchor.meta
            span = Span(source, meta.line, meta.column, meta.line, meta.column + 1)
            raise NetdslError([Reporter().error(
                "E001", f"this expression nests more than {MAX_DEPTH} levels deep", span,
                "split it into several statements")])
        stack.extend((c, depth + 1, anchor) for c in node.children if hasattr(c, "children"))


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


@v_args(meta=True)
class _ToAst(Transformer):
    """Parse tree -> AST. Purely structural: no name or layer is looked up here."""

    def __init__(self, source: SourceFile):
        super().__init__()
        self.source = source
        self.rep = Reporter()  # the few mistakes the grammar accepts (reported after the transform)

    def _span(self, meta) -> Span:
        return Span(self.source, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> Span:
        return Span(self.source, tok.line, tok.column, tok.end_line, tok.end_column)

    # definitions
    def start(self, meta, items):
        return ast.File(self.source, [i for i in items if i is not None])

    def model_def(self, meta, items):
        name, *body = items
        return ast.ModelDef(self._span(meta), str(name), self._tspan(name), body)

    def block_def(self, meta, items):
        name, params, *body = items
        return ast.BlockDef(self._span(meta), str(name), self._tspan(name), params or [], body)

    def train_def(self, meta, items):
        name, *settings = items
        return ast.TrainDef(self._span(meta), str(name), self._tspan(name), settings)

    def params(self, meta, items):
        return [p for p in items if p is not None]

    def param(self, meta, items):
        name, default = items
        return ast.Param(self._span(meta), str(name), default)

    def setting(self, meta, items):
        key, value = items
        return ast.Setting(self._span(meta), key[0], key[1], value)

    def dotted(self, meta, items):
        return [str(t) for t in items], self._span(meta)

    # statements
    def input_stmt(self, meta, items):
        name, shape, dtype, where, *more = items
        dt = ast.Name(self._tspan(dtype), str(dtype)) if dtype is not None else None
        return ast.Input(self._span(meta), str(name), self._tspan(name), shape, dt,
                         [e for e in more if e is not None])

    def output_stmt(self, meta, items):
        return ast.Output(self._span(meta), [v for v, _ in items], [a for _, a in items])

    def output_item(self, meta, items):
        return items[0], items[1]

    def assign_stmt(self, meta, items):
        *targets, value = items
        return ast.Assign(self._span(meta), targets, value)

    def expr_stmt(self, meta, items):
        return ast.ExprStmt(self._span(meta), items[0])

    def target(self, meta, items):
        return ast.Target(self._tspan(items[0]), str(items[0]), items[1])

    # expressions
    def conditional(self, meta, items):
        then, test, other = items
        return ast.Conditional(self._span(meta), then, test, other)

    def chain(self, meta, items):
        head, *rest = items
        steps = [s if isinstance(s, ast.Step) else ast.Step(s.span, s) for s in rest if not
                 isinstance(s, Token)]
        return ast.Chain(self._span(meta), head, steps)

    def named_step(self, meta, items):
        expr, alias = items
        return ast.Step(self._span(meta), expr, str(alias), self._tspan(alias))

    def or_(self, meta, items):
        return ast.BoolOp(self._span(meta), "or", items[0], items[1])

    def and_(self, meta, items):
        return ast.BoolOp(self._span(meta), "and", items[0], items[1])

    def not_(self, meta, items):
        return ast.Not(self._span(meta), items[0])

    def compare(self, meta, items):
        left, op, right = items
        return ast.Compare(self._span(meta), str(op), left, right)

    def binop(self, meta, items):
        left, op, right = items
        return ast.BinOp(self._span(meta), str(op), left, right)

    def neg(self, meta, items):
        return ast.Neg(self._span(meta), items[-1])

    def call(self, meta, items):
        func, arguments = items
        args, kwargs = [], []
        for a in arguments or []:
            if kwargs and not isinstance(a, ast.Kwarg):
                self.rep.error("E001", "a positional argument cannot follow a keyword argument", a.span,
                               f"move it before '{kwargs[0].name}=', or name it")
            (kwargs if isinstance(a, ast.Kwarg) else args).append(a)
        return ast.Call(self._span(meta), func, args, kwargs)

    def arguments(self, meta, items):
        return [a for a in items if a is not None]

    def kwarg(self, meta, items):
        name, value = items
        return ast.Kwarg(self._span(meta), str(name), self._tspan(name), value)

    def attribute(self, meta, items):
        return ast.Attribute(self._span(meta), items[0], str(items[1]))

    def index(self, meta, items):
        return ast.Index(self._span(meta), items[0], items[1])

    def name(self, meta, items):
        return ast.Name(self._span(meta), str(items[0]))

    def int_(self, meta, items):
        digits = str(items[0]).replace("_", "")
        if len(digits) > MAX_INT_DIGITS:  # int() of a huge literal is slow, then refuses
            self.rep.error("E001", f"this number has {len(digits)} digits; netdsl takes at most "
                           f"{MAX_INT_DIGITS}", self._span(meta))
            return ast.Num(self._span(meta), 0)
        return ast.Num(self._span(meta), int(digits))

    def float_(self, meta, items):
        return ast.Num(self._span(meta), float(str(items[0]).replace("_", "")))

    def string(self, meta, items):
        raw = str(items[0])
        body = raw[1:-1]
        value = body.encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in body else body
        return ast.Str(self._span(meta), value)

    def true(self, meta, items):
        return ast.Const(self._span(meta), True)

    def false(self, meta, items):
        return ast.Const(self._span(meta), False)

    def none(self, meta, items):
        return ast.Const(self._span(meta), None)

    def tuple(self, meta, items):
        return ast.TupleExpr(self._span(meta), [i for i in items if i is not None])

    def list(self, meta, items):
        return ast.ListExpr(self._span(meta), [i for i in items if i is not None])
