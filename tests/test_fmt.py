"""`netdsl fmt` (issue 14): one canonical layout that never changes what a spec means.

- Identity: every spec in specs/ and tests/fmt/canonical.net (every construct, comments in
  every place) print back unchanged.
- Pairs: tests/fmt/*.in.net format to their *.out.net.
- Property: over specs/, every test corpus file that parses, the imported zoo goldens and
  fuzzed specs, the formatted text parses to the same syntax tree (spans aside), formatting it
  again changes nothing, and every comment survives; a formatted spec that checks builds the
  identical model (state_dict keys, weights under one seed, outputs).
- The command line: --check, --diff, `-`, rewriting in place, errors at the line.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path

import pytest
import torch

import netdsl
from netdsl.diagnostics import NetdslError
from netdsl.source import SourceFile, Span
from netdsl.syntax import parse
from netdsl.syntax.fmt import comments, format_text

TESTS = Path(__file__).parent
ROOT = TESTS.parent
SPECS = sorted((ROOT / "specs").glob("*.net"))
CORPUS = sorted(p for p in TESTS.rglob("*.net") if "fmt" not in p.parts)


def shape(node):
    """A syntax tree without its places: what the spec says, not where."""
    if dataclasses.is_dataclass(node) and not isinstance(node, (Span, SourceFile)):
        return (type(node).__name__, tuple((f.name, shape(getattr(node, f.name)))
                                           for f in dataclasses.fields(node)
                                           if not isinstance(getattr(node, f.name), (Span,
                                                                                     SourceFile))))
    if isinstance(node, (list, tuple)):
        return tuple(shape(x) for x in node)
    return node


def holds(text: str, name: str) -> str:
    """The properties every formatting must keep; returns the formatted text."""
    out = format_text(text, name)
    assert shape(parse(out, name)) == shape(parse(text, name)), name
    assert format_text(out, name) == out, f"{name}: formatting twice changes it"
    assert sorted(c.text for c in comments(out)) == sorted(c.text for c in comments(text)), name
    return out


@pytest.mark.parametrize("path", SPECS + [TESTS / "fmt" / "canonical.net"], ids=lambda p: p.name)
def test_canonical_files_print_back_unchanged(path):
    text = path.read_text(encoding="utf-8")
    assert holds(text, path.name) == text


@pytest.mark.parametrize("path", sorted((TESTS / "fmt").glob("*.in.net")), ids=lambda p: p.name)
def test_pairs(path):
    want = path.with_name(path.name.replace(".in.net", ".out.net")).read_text(encoding="utf-8")
    assert holds(path.read_text(encoding="utf-8"), path.name) == want


def test_every_corpus_file_that_parses():
    seen = 0
    for path in CORPUS:
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            parse(text, path.name)
        except NetdslError:
            continue
        holds(text, str(path))
        seen += 1
    assert seen > 50


def same_model(a: str, b: str) -> None:
    sa, sb = netdsl.loads(a, "a.net"), netdsl.loads(b, "b.net")
    assert sa.model_names == sb.model_names
    for name in sa.model_names:
        torch.manual_seed(0)
        ma = sa.build(name).eval()
        torch.manual_seed(0)
        mb = sb.build(name).eval()
        da, db = ma.state_dict(), mb.state_dict()
        assert list(da) == list(db)
        assert all(torch.equal(da[k], db[k]) for k in da)
        from netdsl.targets.export import check_sizes, example_inputs

        args = example_inputs(sa.graph(name), check_sizes(sa.graph(name))[1][1])
        with torch.no_grad():
            try:
                oa = ma(*args)
            except (IndexError, RuntimeError) as exc:  # ids an Embedding-less input cannot take
                with pytest.raises(type(exc)):
                    mb(*args)
                continue
            ob = mb(*args)
        for x, y in zip(oa if isinstance(oa, tuple) else (oa,),
                        ob if isinstance(ob, tuple) else (ob,), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("path", [p for p in SPECS if p.stem not in ("gpt2", "vit_b_16")],
                         ids=lambda p: p.name)
def test_formatted_spec_builds_the_identical_model(path):
    text = path.read_text(encoding="utf-8")
    messy = "\n".join(line.strip() if not line.lstrip().startswith("#") else line
                      for line in text.splitlines())  # indentation is not meaning
    same_model(text, holds(messy, path.name))


def test_fuzzed_specs_keep_their_meaning():
    sys.path.insert(0, str(TESTS))
    from specgen import spec_text

    rng = random.Random(14)
    checked = 0
    for _ in range(40):
        text = spec_text(rng)
        try:
            netdsl.loads(text, "gen.net")
        except NetdslError:
            continue
        # the same spec written carelessly: on one line per statement, odd spaces
        messy = text.replace(" -> ", "->").replace(", ", ",")
        same_model(text, holds(messy, "gen.net"))
        checked += 1
    assert checked >= 20


def test_precedence_keeps_meaning_with_fewest_parentheses():
    cases = {
        "(a + b) * c": "(a + b) * c",
        "a + (b * c)": "a + b * c",
        "(a - b) - c": "a - b - c",
        "a - (b - c)": "a - (b - c)",
        "-(a ** 2)": "-a ** 2",
        "(-a) ** 2": "(-a) ** 2",
        "a ** (b ** c)": "a ** b ** c",
        "(a ** b) ** c": "(a ** b) ** c",
        "a ** -b": "a ** -b",
        "not (a and b)": "not (a and b)",
        "(not a) and b": "not a and b",
        "(a or b) and c": "(a or b) and c",
        "(x -> f) + y": "(x -> f) + y",
        "x -> (g -> h)": "x -> (g -> h)",
        "(a if b else c) if d else e": "(a if b else c) if d else e",
        "a if b else (c if d else e)": "a if b else c if d else e",
        "(a , b,)": "(a, b)",
        "[ ]": "[]",
        "f(a)(b)[c].d": "f(a)(b)[c].d",
        "(a + b).size(1)": "(a + b).size(1)",
        "1_000 + 1e-6 + 'q'": "1_000 + 1e-6 + 'q'",
    }
    for given, want in cases.items():
        text = f"train T {{\n  v = {given}\n}}\n"
        assert holds(text, "p.net") == f"train T {{\n  v = {want}\n}}\n", given


def test_comments_stay_where_they_stand():
    text = ("# top\n\nmodel M {  # header\n  # above input\n  input x: [4]  # after input\n"
            "  y = x -> Linear(4)  # first\n    # between steps\n    -> ReLU  # second\n"
            "    -> Linear(2)\n  # before output\n  output y\n  # before brace\n}  # closing\n"
            "# the end\n")
    want = ("# top\n\nmodel M {  # header\n  # above input\n  input x: [4]  # after input\n"
            "  y = x -> Linear(4)  # first\n        # between steps\n        -> ReLU  # second\n"
            "        -> Linear(2)\n  # before output\n  output y\n  # before brace\n}  # closing\n"
            "# the end\n")
    assert holds(text, "c.net") == want


def test_cli(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    messy = (TESTS / "fmt" / "messy.in.net").read_text()
    (tmp_path / "a.net").write_text(messy)
    (tmp_path / "b.net").write_text((TESTS / "fmt" / "canonical.net").read_text())
    code, out, _ = cli(["fmt", "--check", "a.net", "b.net"])
    assert code == 1 and out == "would reformat a.net\n"
    code, out, _ = cli(["fmt", "--diff", "a.net"])
    assert code == 0 and out.startswith("--- a.net\n+++ a.net (formatted)\n")
    assert (tmp_path / "a.net").read_text() == messy  # --check and --diff change nothing
    code, _, err = cli(["fmt", "a.net", "b.net"])
    assert code == 0 and err == "formatted a.net\n"
    assert (tmp_path / "a.net").read_text() == (TESTS / "fmt" / "messy.out.net").read_text()
    code, _, _ = cli(["fmt", "--check", str(tmp_path)])
    assert code == 0
    (tmp_path / "bad.net").write_text("model M {\n  input x: [4]\n  x -> -> y\n}\n")
    code, _, err = cli(["fmt", "bad.net"])
    assert code == 1 and "bad.net:3:8: error[E001]" in err
    assert (tmp_path / "bad.net").read_text() == "model M {\n  input x: [4]\n  x -> -> y\n}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.net", "b.net", "bad.net"]


def test_cli_stdin(monkeypatch, cli):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("model M{input x:[4]\noutput x}"))
    code, out, _ = cli(["fmt", "-"])
    assert code == 0 and out == "model M {\n  input x: [4]\n  output x\n}\n"
