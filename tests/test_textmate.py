"""The TextMate grammar (grammars/vscode/syntaxes/netdsl.tmLanguage.json), tokenized by the
engine VS Code uses (vscode-textmate over vscode-oniguruma, from npm; .ci/run installs them,
and the test skips where node or they are missing): keywords, layer names, numbers, strings,
comments and arguments get their scopes on real specs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXT = ROOT / "grammars" / "vscode"


def tokens(*files: Path) -> dict[str, list]:
    if shutil.which("node") is None or not (EXT / "node_modules" / "vscode-textmate").is_dir():
        pytest.skip("node and the npm packages of grammars/vscode (npm ci there) are needed")
    done = subprocess.run(["node", "test/tokenize.js", *map(str, files)], cwd=EXT,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def scope(found: list, line: int, text: str) -> str:
    """The innermost scope of the first token `text` on `line`."""
    return next(scopes[-1] for n, t, scopes in found if n == line and t == text)


def test_scopes_on_real_specs():
    mnist, resnet = ROOT / "specs" / "mnist.net", ROOT / "specs" / "resnet18.net"
    got = tokens(mnist, resnet)
    m, r = got[str(mnist)], got[str(resnet)]
    lines = mnist.read_text().split("\n")
    row = {needle: next(i + 1 for i, line in enumerate(lines) if needle in line)
           for needle in ("model LeNet", "input image", "Conv2d(6", "data = MNIST", "# 10%",
                          "scheduler")}
    assert scope(m, row["model LeNet"], "model") == "storage.type.netdsl"
    assert scope(m, row["model LeNet"], "LeNet") == "entity.name.type.netdsl"
    assert scope(m, row["input image"], "input") == "keyword.control.netdsl"
    assert scope(m, row["input image"], "28") == "constant.numeric.netdsl"
    assert scope(m, row["Conv2d(6"], "Conv2d") == "support.class.layer.netdsl"
    assert scope(m, row["Conv2d(6"], "->") == "keyword.operator.arrow.netdsl"
    assert scope(m, row["Conv2d(6"], "padding") == "variable.parameter.netdsl"
    assert scope(m, row["data = MNIST"], "data") == "variable.other.assignment.netdsl"
    assert scope(m, row["data = MNIST"], "root") == "variable.parameter.netdsl"
    assert any(t == "data" and s[-1] == "string.quoted.double.netdsl"
               for n, t, s in m if n == row["data = MNIST"])
    assert scope(m, row["data = MNIST"], "true") == "constant.language.netdsl"
    assert scope(m, row["# 10%"], lines[row["# 10%"] - 1].strip()) == \
        "comment.line.number-sign.netdsl"
    assert any(s[-1] == "comment.line.number-sign.netdsl" for n, _, s in m if n == row["scheduler"])
    rlines = resnet.read_text().split("\n")
    block = next(i + 1 for i, line in enumerate(rlines) if line.startswith("block Basic"))
    assert scope(r, block, "Basic") == "entity.name.type.netdsl"
    where = next(i + 1 for i, line in enumerate(rlines) if line.startswith("  input image"))
    assert scope(r, where, "where") == "keyword.control.netdsl"
    cond = next(i + 1 for i, line in enumerate(rlines) if " if stride" in line)
    assert scope(r, cond, "if") == "keyword.control.netdsl"
    assert scope(r, cond, "!=") == "keyword.operator.netdsl"


def test_every_spec_tokenizes_without_an_invalid_scope():
    files = sorted((ROOT / "specs").glob("*.net"))
    for name, found in tokens(*files).items():
        assert found, name
        assert not any("invalid" in " ".join(s) for _, _, s in found), name
