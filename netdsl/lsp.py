"""`netdsl lsp`: a language server over stdio (pygls) for any editor that speaks LSP.

What it answers, from the same passes as `netdsl check` (nothing in a spec is ever run):
- diagnostics on open and on every change: everything `check` reports, training plans
  included, with the range of the exact tokens, hints and the notes' places as related
  information; a change is analysed after a short pause in typing, off the message loop, so
  that a keystroke is answered at once whatever the spec's size;
- hover on a layer, a value or a block call: its output shape (symbolic where declared), the
  layer with every argument resolved (inferred sizes filled in), its parameter count, and the
  arguments' types from the op's declaration;
- completion of layer names, block names, value names and training settings, and inside a
  call the layer's or block's arguments with their defaults (and which are inferred);
- go to definition, find references and rename of blocks and values;
- inlay hints: the shape after each layer (off with initializationOptions {"inlayHints": false});
- document symbols (models, blocks, train sections and the values they name); formatting
  through `netdsl fmt`.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from .diagnostics import Diagnostic, NetdslError

PAUSE = 0.15  # seconds of quiet typing before a changed document is analysed


@dataclass
class Analysis:
    """One version of a document, analysed."""

    version: int | None
    spec: object | None  # netdsl.spec.Spec when the text checks
    diagnostics: list[Diagnostic] = field(default_factory=list)
    file: object | None = None  # the AST when the text parses


def analyse(text: str, name: str, version: int | None = None) -> Analysis:
    """Parse and check `text` as `netdsl check` does; never raises for a spec's mistakes."""
    from .spec import Spec
    from .syntax import parse

    try:
        file = parse(text, name)
    except NetdslError as exc:
        return Analysis(version, None, list(exc.diagnostics))
    try:
        spec = Spec(text, name, file=file)
    except NetdslError as exc:
        return Analysis(version, None, list(exc.diagnostics), file)
    except RecursionError:
        return Analysis(version, None, [Diagnostic("E001", "the spec nests too deeply")], file)
    return Analysis(version, spec, list(spec.warnings), spec.file)


# ---- conversions ----------------------------------------------------------------------------

def _range(span, types):
    if span is None:
        return types.Range(start=types.Position(line=0, character=0),
                           end=types.Position(line=0, character=1))
    return types.Range(
        start=types.Position(line=span.line - 1, character=span.col - 1),
        end=types.Position(line=span.end_line - 1, character=max(span.end_col - 1, span.col)))


def lsp_diagnostics(analysis: Analysis, uri: str, types) -> list:
    out = []
    for d in analysis.diagnostics:
        message = d.message + (f"\nhint: {d.hint}" if d.hint else "")
        related = [types.DiagnosticRelatedInformation(
            location=types.Location(uri=uri, range=_range(span, types)), message=text)
            for text, span in [*d.related, *d.notes] if span is not None]
        out.append(types.Diagnostic(
            range=_range(d.span, types), message=message, code=d.code, source="netdsl",
            severity=types.DiagnosticSeverity.Warning if d.severity == "warning"
            else types.DiagnosticSeverity.Error,
            related_information=related or None))
    return out


def _contains(span, line: int, col: int) -> bool:
    """Whether a 1-based (line, col) falls inside a span (end exclusive)."""
    if span is None:
        return False
    return (span.line, span.col) <= (line, col) < (span.end_line, span.end_col)


def _size(span) -> tuple:
    return (span.end_line - span.line, span.end_col - span.col)


def node_at(spec, line: int, col: int):
    """(graph, node) of the innermost layer or value whose place holds (line, col)."""
    best = None
    for name in spec.model_names:
        for _, node, graph in spec.graph(name).walk():
            for span in (node.call_span, node.span, *node.arg_spans.values()):
                if _contains(span, line, col) and (best is None or _size(span) < best[0]):
                    best = (_size(span), graph, node)
    return (best[1], best[2]) if best else (None, None)


def hover_text(spec, line: int, col: int) -> str | None:
    graph, node = node_at(spec, line, col)
    if node is None:
        return None
    shapes = ", ".join(f"[{', '.join(str(s) for s in t.shape)}]"
                       + ("" if t.dtype == "float32" else f" {t.dtype}") for t in node.types)
    lines = []
    if node.kind == "op":
        op = node.op
        lines.append(f"**{node.name}** = `{op.kind}({op.label_args()})` -> `{shapes}`")
        params = op.param_count()
        if params:
            lines.append(f"{params:,} parameters")
        about = (type(op).__doc__ or "").strip().split("\n\n")[0]
        if about:
            lines += ["", " ".join(about.split())]
        fields = [f for f in type(op).model_fields if f not in ("op", "masks")]
        docs = [f"- `{f}` = `{getattr(op, f)!r}`: {type(op).describe_field(f)}" for f in fields]
        lines += ["", *docs]
    elif node.kind == "block":
        from .ir.graph import parameter_counts

        total, _ = parameter_counts(node.graph)
        args = ", ".join(f"{k}={v}" for k, v in node.block_args.items())
        lines.append(f"**{node.name}** = block `{node.block}({args})` -> `{shapes}`")
        lines.append(f"{total:,} parameters")
    else:
        lines.append(f"**{node.name}**: input `{shapes}` (without the batch)")
    return "\n".join(lines)


def words(spec_or_file, line: int | None = None) -> dict[str, list[str]]:
    """What completion offers: layers, blocks, training settings, and the values of the model or
    block around 1-based `line` (all of the file's where no definition holds it)."""
    from .ops.registry import op_names
    from .syntax import ast

    out = {"layer": sorted(op_names()), "block": [], "value": [], "setting": []}
    file = getattr(spec_or_file, "file", spec_or_file)
    definitions = getattr(file, "definitions", [])
    around = [d for d in definitions if line is not None and d.span.line <= line <= d.span.end_line]
    for d in definitions:
        if isinstance(d, ast.BlockDef):
            out["block"].append(d.name)
        if around and d is not around[0]:
            continue
        for s in getattr(d, "body", []):
            if isinstance(s, ast.Assign):
                out["value"] += [t.name for t in s.targets]
            elif isinstance(s, ast.Input):
                out["value"].append(s.name)
    from .runtime.plan import SETTINGS

    out["setting"] = sorted(SETTINGS)
    return out


def call_at(text: str, line: int, col: int) -> str | None:
    """The layer or block whose call's brackets hold a 0-based (line, character): the name
    before the innermost `(` not yet closed on that line."""
    row = text.split("\n")[line][:col] if line < len(text.split("\n")) else ""
    depth = 0
    for i in range(len(row) - 1, -1, -1):
        ch = row[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            if depth == 0:
                j = i
                while j > 0 and (row[j - 1].isalnum() or row[j - 1] == "_"):
                    j -= 1
                return row[j:i] or None
            depth -= 1
    return None


def argument_items(name: str, file) -> list[tuple[str, str, str]]:
    """(label, detail, documentation) of the arguments a layer or block takes, with defaults."""
    from .ops.base import Extra, Inferred
    from .ops.registry import get_op
    from .syntax import ast

    op = get_op(name)
    if op is not None:
        out = []
        for field_name, f in op.model_fields.items():
            if field_name in ("op", "masks"):
                continue
            default = "required" if f.is_required() else f"= {f.default!r}"
            if any(isinstance(m, Inferred) for m in f.metadata):
                default = "inferred from the input"
            kind = "netdsl" if any(isinstance(m, Extra) for m in f.metadata) else "torch"
            out.append((f"{field_name}=", f"{default} ({kind})", op.describe_field(field_name)))
        return out
    for d in getattr(file, "definitions", []):
        if isinstance(d, ast.BlockDef) and d.name == name:
            return [(f"{p.name}=", "required" if p.default is None else "has a default",
                     f"parameter of block {name}") for p in d.params]
    return []


def definition_span(file, name: str):
    """Where `name` is defined: a block, or a value (assigned or an input)."""
    from .syntax import ast

    for d in getattr(file, "definitions", []):
        if isinstance(d, ast.BlockDef) and d.name == name:
            return d.name_span
    for d in getattr(file, "definitions", []):
        for s in getattr(d, "body", []):
            if isinstance(s, ast.Assign) and any(t.name == name for t in s.targets):
                return next(t.span for t in s.targets if t.name == name)
            if isinstance(s, ast.Input) and s.name == name:
                return s.name_span
    return None


def occurrences(file, name: str) -> list:
    """Every span where `name` stands as a value or a block: its definitions and its uses
    (what references list and rename changes)."""
    from .passes.names import walk
    from .syntax import ast

    out = []
    for d in getattr(file, "definitions", []):
        if isinstance(d, ast.BlockDef) and d.name == name:
            out.append(d.name_span)
        exprs = []
        for s in getattr(d, "body", []):
            if isinstance(s, ast.Assign):
                out += [t.span for t in s.targets if t.name == name]
                exprs += [s.value, *(t.annotation for t in s.targets)]
            elif isinstance(s, ast.Input):
                if s.name == name:
                    out.append(s.name_span)
                exprs += [s.shape, *s.where]
            elif isinstance(s, ast.Output):
                exprs += [*s.values, *s.annotations]
            elif isinstance(s, ast.ExprStmt):
                exprs.append(s.expr)
        exprs += [st.value for st in getattr(d, "settings", [])]
        exprs += [p.default for p in getattr(d, "params", [])]
        for e in exprs:
            for sub in walk(e):
                if isinstance(sub, ast.Name) and sub.id == name:
                    out.append(sub.span)
    return sorted(out, key=lambda sp: (sp.line, sp.col))


def inlay_hints(spec, first_line: int, last_line: int) -> list[tuple[int, int, str]]:
    """(line, col, text) 1-based: the shape after each layer of a chain, at the end of the
    layer's call, for the lines asked for."""
    out = []
    for name in spec.model_names:
        for _, node, _graph in spec.graph(name).walk():
            span = node.call_span or node.span
            if node.kind == "input" or span is None or not node.types:
                continue
            if not first_line <= span.end_line <= last_line:
                continue
            t = node.types[0]
            out.append((span.end_line, span.end_col,
                        f": [{', '.join(str(s) for s in t.shape)}]"))
    return sorted(set(out))


def word_at(text: str, line: int, col: int) -> str | None:
    """The identifier under a 0-based (line, character)."""
    rows = text.split("\n")
    if line >= len(rows):
        return None
    row = rows[line]
    start = end = min(col, len(row))
    while start > 0 and (row[start - 1].isalnum() or row[start - 1] == "_"):
        start -= 1
    while end < len(row) and (row[end].isalnum() or row[end] == "_"):
        end += 1
    return row[start:end] or None


def symbols(file, types) -> list:
    from .syntax import ast

    out = []
    for d in getattr(file, "definitions", []):
        kind = {ast.ModelDef: types.SymbolKind.Class, ast.BlockDef: types.SymbolKind.Function,
                ast.TrainDef: types.SymbolKind.Module}[type(d)]
        children = []
        for s in getattr(d, "body", []):
            if isinstance(s, ast.Assign):
                for t in s.targets:
                    children.append(types.DocumentSymbol(
                        name=t.name, kind=types.SymbolKind.Variable, range=_range(s.span, types),
                        selection_range=_range(t.span, types)))
            elif isinstance(s, ast.Input):
                children.append(types.DocumentSymbol(
                    name=s.name, kind=types.SymbolKind.Field, range=_range(s.span, types),
                    selection_range=_range(s.name_span, types)))
        word = {ast.ModelDef: "model", ast.BlockDef: "block", ast.TrainDef: "train"}[type(d)]
        out.append(types.DocumentSymbol(name=d.name, detail=word, kind=kind,
                                        range=_range(d.span, types),
                                        selection_range=_range(d.name_span, types),
                                        children=children or None))
    return out


# ---- the server -----------------------------------------------------------------------------

def make_server():
    from .weightfile import need

    need("pygls", "the language server")
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer

    from ._version import __version__

    server = LanguageServer("netdsl", __version__)
    hints_on = {"value": True}  # initializationOptions {"inlayHints": false} turns them off

    @server.feature(types.INITIALIZE)
    def initialize(ls, params: types.InitializeParams):
        options = params.initialization_options or {}
        if isinstance(options, dict) and options.get("inlayHints") is False:
            hints_on["value"] = False

    state: dict[str, Analysis] = {}
    timers: dict[str, asyncio.TimerHandle] = {}
    lock = threading.Lock()

    def publish(uri: str, version: int | None) -> None:
        doc = server.workspace.get_text_document(uri)
        if version is not None and doc.version is not None and doc.version != version:
            return  # typing went on: a newer analysis is on its way
        result = analyse(doc.source, doc.path or uri, version)
        with lock:
            state[uri] = result
        server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, diagnostics=lsp_diagnostics(result, uri, types), version=version))

    def schedule(uri: str, version: int | None, delay: float) -> None:
        loop = asyncio.get_event_loop()
        old = timers.pop(uri, None)
        if old is not None:
            old.cancel()

        def run():
            timers.pop(uri, None)
            loop.run_in_executor(None, publish, uri, version)

        timers[uri] = loop.call_later(delay, run)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: types.DidOpenTextDocumentParams):
        schedule(params.text_document.uri, params.text_document.version, 0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls, params: types.DidChangeTextDocumentParams):
        schedule(params.text_document.uri, params.text_document.version, PAUSE)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: types.DidCloseTextDocumentParams):
        with lock:
            state.pop(params.text_document.uri, None)
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=params.text_document.uri, diagnostics=[]))

    def current(uri: str) -> Analysis:
        with lock:
            got = state.get(uri)
        if got is None:  # asked before the first analysis: do it now
            doc = server.workspace.get_text_document(uri)
            got = analyse(doc.source, doc.path or uri, doc.version)
            with lock:
                state[uri] = got
        return got

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls, params: types.HoverParams):
        a = current(params.text_document.uri)
        if a.spec is None:
            return None
        text = hover_text(a.spec, params.position.line + 1, params.position.character + 1)
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                                        value=text))

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=[">", " ", "("]))
    def completion(ls, params: types.CompletionParams):
        a = current(params.text_document.uri)
        kinds = {"layer": types.CompletionItemKind.Class,
                 "block": types.CompletionItemKind.Module,
                 "value": types.CompletionItemKind.Variable,
                 "setting": types.CompletionItemKind.Property}
        doc = ls.workspace.get_text_document(params.text_document.uri)
        inside = call_at(doc.source, params.position.line, params.position.character)
        items = [types.CompletionItem(label=label, kind=types.CompletionItemKind.Field,
                                      detail=detail, documentation=docs, sort_text=f"0{n:03}")
                 for n, (label, detail, docs) in enumerate(argument_items(inside, a.file))
                 ] if inside else []
        for kind, names in words(a.file, params.position.line + 1).items():
            items += [types.CompletionItem(label=n, kind=kinds[kind], detail=kind)
                      for n in dict.fromkeys(names)]
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(ls, params: types.DefinitionParams):
        a = current(params.text_document.uri)
        doc = ls.workspace.get_text_document(params.text_document.uri)
        name = word_at(doc.source, params.position.line, params.position.character)
        span = definition_span(a.file, name) if name and a.file is not None else None
        return None if span is None else types.Location(uri=params.text_document.uri,
                                                        range=_range(span, types))

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    def references(ls, params: types.ReferenceParams):
        a = current(params.text_document.uri)
        doc = ls.workspace.get_text_document(params.text_document.uri)
        name = word_at(doc.source, params.position.line, params.position.character)
        if not name or a.file is None:
            return []
        return [types.Location(uri=params.text_document.uri, range=_range(sp, types))
                for sp in occurrences(a.file, name)]

    @server.feature(types.TEXT_DOCUMENT_RENAME)
    def rename(ls, params: types.RenameParams):
        a = current(params.text_document.uri)
        doc = ls.workspace.get_text_document(params.text_document.uri)
        name = word_at(doc.source, params.position.line, params.position.character)
        if not name or a.file is None or not params.new_name.isidentifier():
            return None
        spans = occurrences(a.file, name)
        if definition_span(a.file, name) is None:
            return None  # a layer kind or a keyword: not the file's to rename
        edits = [types.TextEdit(range=_range(sp, types), new_text=params.new_name)
                 for sp in spans]
        return types.WorkspaceEdit(changes={params.text_document.uri: edits})

    @server.feature(types.TEXT_DOCUMENT_INLAY_HINT)
    def inlay_hint(ls, params: types.InlayHintParams):
        if not hints_on["value"]:
            return []
        a = current(params.text_document.uri)
        if a.spec is None:
            return []
        r = params.range
        return [types.InlayHint(position=types.Position(line=line - 1, character=col - 1),
                                label=text, kind=types.InlayHintKind.Type, padding_left=False)
                for line, col, text in inlay_hints(a.spec, r.start.line + 1, r.end.line + 1)]

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbol(ls, params: types.DocumentSymbolParams):
        a = current(params.text_document.uri)
        return symbols(a.file, types) if a.file is not None else []

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls, params: types.DocumentFormattingParams):
        from .syntax.fmt import format_text

        doc = ls.workspace.get_text_document(params.text_document.uri)
        try:
            new = format_text(doc.source, doc.path or params.text_document.uri)
        except NetdslError:
            return None  # a spec that does not parse is left as it is
        if new == doc.source:
            return []
        lines = doc.source.split("\n")
        whole = types.Range(start=types.Position(line=0, character=0),
                            end=types.Position(line=len(lines) - 1, character=len(lines[-1])))
        return [types.TextEdit(range=whole, new_text=new)]

    return server


def main() -> None:
    import os
    import sys

    make_server().start_io()
    sys.stderr.flush()
    os._exit(0)  # the client closed the streams: nothing is left to flush to them
