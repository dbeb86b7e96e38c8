"""`netdsl lsp` (issue 14), driven by a real LSP client (pygls') over stdio: open, change,
diagnostics from every pass (syntax, names, shapes, the training plan), hover with shapes and
resolved arguments, completion, definition, document symbols, formatting."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pygls")
from lsprotocol import types  # noqa: E402
from pygls.lsp.client import LanguageClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOOD = (ROOT / "specs" / "mnist.net").read_text()
URI = "file:///tmp/netdsl-lsp-test/mnist.net"


class Client:
    """A client over stdio, with the diagnostics the server published, by URI."""

    def __init__(self):
        self.lsp = LanguageClient("netdsl-test", "1")
        self.published: dict[str, list] = {}
        self.arrived = asyncio.Event()

        @self.lsp.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def on_diagnostics(ls, params):
            self.published[params.uri] = params.diagnostics
            self.arrived.set()

    async def start(self):
        await self.lsp.start_io(sys.executable, "-m", "netdsl", "lsp")
        await self.lsp.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), root_uri="file:///tmp"))
        self.lsp.initialized(types.InitializedParams())

    async def diagnostics(self, uri: str, timeout: float = 30) -> list:
        self.arrived.clear()
        await asyncio.wait_for(self.arrived.wait(), timeout)
        return self.published[uri]

    async def stop(self):
        await self.lsp.shutdown_async(None)
        self.lsp.exit(None)
        await self.lsp.stop()


def run(coro):
    return asyncio.run(coro)


def doc(uri):
    return types.TextDocumentIdentifier(uri=uri)


def pos(line, character):
    return types.Position(line=line, character=character)


def opened(uri, text):
    return types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="netdsl", version=1, text=text))


def changed(uri, version, text):
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)])


def where(text: str, needle: str, offset: int = 0):
    """The (line, character) of `needle` in `text`, 0-based."""
    row = next(i for i, line in enumerate(text.split("\n")) if needle in line)
    return row, text.split("\n")[row].index(needle) + offset


def test_a_session_on_a_real_spec():
    async def session():
        c = Client()
        await c.start()
        try:
            c.lsp.text_document_did_open(opened(URI, GOOD))
            assert list(await c.diagnostics(URI)) == []

            # hover on `Linear(120)`: its shape and resolved arguments
            row, col = where(GOOD, "Linear(120)", 2)
            hover = await c.lsp.text_document_hover_async(
                types.HoverParams(text_document=doc(URI), position=pos(row, col)))
            text = hover.contents.value
            assert "Linear(" in text and "[120]" in text and "in_features` = `400`" in text
            assert "48,120 parameters" in text and "`bias` = `True`" in text

            symbols = await c.lsp.text_document_document_symbol_async(
                types.DocumentSymbolParams(text_document=doc(URI)))
            assert [s.name for s in symbols] == ["LeNet", "LeNet"]
            assert [s.detail for s in symbols] == ["model", "train"]

            items = await c.lsp.text_document_completion_async(
                types.CompletionParams(text_document=doc(URI), position=pos(row, col)))
            labels = {i.label for i in items.items}
            assert {"Conv2d", "MaxPool2d", "image", "optimizer", "epochs"} <= labels
            # inside a call: its arguments, with their defaults
            items = await c.lsp.text_document_completion_async(
                types.CompletionParams(text_document=doc(URI), position=pos(row, col + 7)))
            args = {i.label: i.detail for i in items.items if i.label.endswith("=")}
            assert args["out_features="] == "required (torch)"
            assert args["bias="] == "= True (torch)"
            assert args["in_features="] == "inferred from the input (torch)"

            # a shape mistake: the diagnostic sits on the argument
            broken = GOOD.replace("Linear(120)", "Linear(120, in_features=7)")
            c.lsp.text_document_did_change(changed(URI, 2, broken))
            found = await c.diagnostics(URI)
            assert [d.code for d in found] == ["E302"]
            # the derivation chain in the message, as places: Flatten <- MaxPool2d <- ...
            chain = [i.message for i in found[0].related_information]
            assert chain[0].startswith("Flatten") and chain[1].startswith("MaxPool2d"), chain
            r = found[0].range
            line = broken.split("\n")[r.start.line]
            assert line[r.start.character - len("in_features="):r.end.character] == "in_features=7"

            # a syntax error, a name error, a training-plan error, one after the other
            for n, (text, code) in enumerate(((GOOD.replace("-> ReLU", "-> -> ReLU", 1), "E001"),
                                              (GOOD.replace("-> logits", "-> logitz"), "E201"),
                                              (GOOD.replace("epochs = 4", "epochz = 4"), "E402"))):
                c.lsp.text_document_did_change(changed(URI, 3 + n, text))
                got = await c.diagnostics(URI)
                assert got and got[0].code == code, (code, got)

            # formatting a messy but valid document
            messy = GOOD.replace("  batch_size = 64", "  batch_size=64")
            c.lsp.text_document_did_change(changed(URI, 9, messy))
            await c.diagnostics(URI)
            edits = await c.lsp.text_document_formatting_async(types.DocumentFormattingParams(
                text_document=doc(URI),
                options=types.FormattingOptions(tab_size=2, insert_spaces=True)))
            assert len(edits) == 1 and edits[0].new_text == GOOD

            # go to a block's definition from its use; hover on the call
            spec = (ROOT / "specs" / "resnet18.net").read_text()
            uri = "file:///tmp/netdsl-lsp-test/resnet18.net"
            c.lsp.text_document_did_open(opened(uri, spec))
            assert list(await c.diagnostics(uri)) == []
            row, col = where(spec, "Basic(64)", 1)
            found = await c.lsp.text_document_definition_async(
                types.DefinitionParams(text_document=doc(uri), position=pos(row, col)))
            assert found.range.start.line == where(spec, "block Basic")[0]
            hover = await c.lsp.text_document_hover_async(
                types.HoverParams(text_document=doc(uri), position=pos(row, col)))
            assert "block `Basic(" in hover.contents.value and "H" in hover.contents.value
        finally:
            await c.stop()

    run(session())


def test_a_keystroke_on_a_long_spec_is_answered_at_once():
    """1,000 statements: a change is acknowledged without waiting for its analysis (which
    arrives as diagnostics afterwards); hover answers from the last analysis."""
    lines = ["model Long {", "  input x: [16]", "  v0 = x -> Linear(16)"]
    lines += [f"  v{i} = v{i - 1} -> {'ReLU' if i % 2 else 'Linear(16)'}" for i in range(1, 1000)]
    lines += ["  output v999", "}", ""]
    text = "\n".join(lines)
    uri = "file:///tmp/netdsl-lsp-test/long.net"

    async def session():
        c = Client()
        await c.start()
        try:
            c.lsp.text_document_did_open(opened(uri, text))
            assert list(await c.diagnostics(uri)) == []
            times = []
            for version in range(2, 13):
                t = time.perf_counter()
                c.lsp.text_document_did_change(changed(uri, version, text + "#" * version))
                await c.lsp.text_document_hover_async(
                    types.HoverParams(text_document=doc(uri), position=pos(500, 12)))
                times.append(time.perf_counter() - t)
            assert list(await c.diagnostics(uri)) == []
            print(f"keystroke + hover on 1,000 statements: median "
                  f"{sorted(times)[len(times) // 2] * 1000:.1f} ms")
        finally:
            await c.stop()

    run(session())


def test_references_rename_and_inlay_hints():
    spec = (ROOT / "specs" / "resnet18.net").read_text()
    uri = "file:///tmp/netdsl-lsp-test/refs.net"

    async def session(options):
        c = Client()
        await c.lsp.start_io(sys.executable, "-m", "netdsl", "lsp")
        await c.lsp.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), initialization_options=options))
        c.lsp.initialized(types.InitializedParams())
        try:
            c.lsp.text_document_did_open(opened(uri, spec))
            assert list(await c.diagnostics(uri)) == []
            row, col = where(spec, "y + s", 0)
            refs = await c.lsp.text_document_references_async(types.ReferenceParams(
                text_document=doc(uri), position=pos(row, col),
                context=types.ReferenceContext(include_declaration=True)))
            assert len(refs) == 2  # `y = ...` and `y + s`
            edit = await c.lsp.text_document_rename_async(types.RenameParams(
                text_document=doc(uri), position=pos(row, col), new_name="branch"))
            assert len(edit.changes[uri]) == 2
            row, col = where(spec, "Basic(64)", 1)
            edit = await c.lsp.text_document_rename_async(types.RenameParams(
                text_document=doc(uri), position=pos(row, col), new_name="Residual"))
            lines = spec.split("\n")
            renamed = sorted((e.range.start.line, e.range.start.character) for e in
                             edit.changes[uri])
            assert [lines[r][ch:ch + 5] for r, ch in renamed] == ["Basic"] * 8
            hints = await c.lsp.text_document_inlay_hint_async(types.InlayHintParams(
                text_document=doc(uri), range=types.Range(start=pos(0, 0),
                                                          end=pos(len(lines), 0))))
            return [(h.position.line, h.label) for h in hints]
        finally:
            await c.stop()

    hints = run(session(None))
    row = where(spec, "MaxPool2d(3")[0]
    # the shape after the max-pool, symbolic as declared: [64, f(H), f(W)]
    assert any(r == row and label.startswith(": [64, ") and "H" in label for r, label in hints)
    assert run(session({"inlayHints": False})) == []
