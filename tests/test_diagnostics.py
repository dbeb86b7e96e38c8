"""Golden diagnostics: one small spec per error code in tests/diagnostics/, its full report in a
sibling `.expected` file (`pytest --update-goldens` rewrites them; read the diff as a user would).

A case whose first line is `# cli: ARGS` runs `netdsl ARGS` in tests/diagnostics/ instead, and
its golden holds stderr and the exit status. The code a case is about is its file name's prefix
(`e302_lenet.net` must report E302); `multi_*` cases hold several mistakes at once.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

import netdsl
from netdsl.cli import main
from netdsl.diagnostics import CODES, NetdslError

HERE = Path(__file__).parent / "diagnostics"
CASES = sorted(HERE.glob("*.net"))
# The language's codes, and the CLI's own; E4xx (training plans) and the codes of single
# commands (--set, render) are tested next to them, E900 in test_cli.py.
OWNED = {c for c in CODES if c[:2] in ("E0", "E1", "E2", "E3", "W2")} | {"E501", "E502"}


def report(path: Path, monkeypatch, capsys) -> str:
    """What a user sees for one case."""
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0] if text else ""
    if first.startswith("# cli:"):
        monkeypatch.chdir(HERE)
        monkeypatch.setenv("NO_COLOR", "1")
        with pytest.raises(SystemExit) as exit_info:
            main(shlex.split(first[len("# cli:") :]))
        out = capsys.readouterr()
        return out.err + f"[exit status {exit_info.value.code}]\n"
    try:
        spec = netdsl.loads(text, path.name)
    except NetdslError as exc:
        return exc.format() + "\n"
    return "\n".join(w.format() for w in spec.warnings) + "\n"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden(path, golden, monkeypatch, capsys):
    text = report(path, monkeypatch, capsys)
    assert "Traceback" not in text
    golden(f"diagnostics/{path.stem}.expected", text)
    code = path.stem.split("_")[0].upper()
    if code in CODES:
        assert re.search(rf"(error|warning)\[{code}\]", text), f"{path.name} does not report {code}"


def test_every_code_has_a_case():
    covered = {p.stem.split("_")[0].upper() for p in CASES}
    assert OWNED - covered == set()


@pytest.mark.parametrize(
    "path", [p for p in CASES if not p.read_text().startswith("# cli:")], ids=lambda p: p.stem
)
def test_spans_lie_inside_the_source(path):
    """Every caret points at real text: a line that exists, columns within it."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    try:
        spec = netdsl.loads(text, path.name)
        diagnostics = spec.warnings
    except NetdslError as exc:
        diagnostics = exc.diagnostics
    assert diagnostics
    for d in diagnostics:
        s = d.span
        assert s is not None, d.format()
        assert 1 <= s.line <= max(1, len(lines)), d.format()
        line = lines[s.line - 1] if lines else ""
        assert 1 <= s.col <= len(line) + 1, d.format()
        if s.end_line == s.line:
            assert s.col < s.end_col <= len(line) + 2, d.format()
        for _, note_span in d.notes:
            if note_span is not None:
                assert 1 <= note_span.line <= len(lines)


def test_several_errors_in_one_file_are_reported_together():
    with pytest.raises(NetdslError) as info:
        netdsl.load(HERE / "multi_errors.net")
    codes = [d.code for d in info.value.diagnostics]
    assert len(codes) >= 4, codes
    assert {"E101", "E102", "E104", "E201"} <= set(codes)


def test_the_issue_example_reads_as_the_issue_says():
    with pytest.raises(NetdslError) as info:
        netdsl.load(HERE / "e302_lenet.net")
    (d,) = info.value.diagnostics
    assert d.message == (
        "Linear expects 784 features but gets 400 = 16*5*5 from Flatten <- MaxPool2d (line 5)"
    )
    line = d.span.source.line(d.span.line)
    assert line[d.span.col - 1 : d.span.end_col - 1] == "784"


def test_colour_only_when_asked():
    with pytest.raises(NetdslError) as info:
        netdsl.load(HERE / "e101_unknown_layer.net")
    assert "\033[" not in info.value.format()
    assert "\033[" in info.value.format(color=True)


def test_no_color_environment_is_respected(monkeypatch):
    from netdsl.diagnostics import use_color

    class Tty:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())
    assert not use_color(open(os.devnull, "w"))
