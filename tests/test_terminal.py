"""What netdsl prints on a real terminal never carries a control sequence a user value brought
in (issue 18): file names, strings from a spec, option values. The CLI runs on a
pseudo-terminal, as a person's shell would run it, so that nothing (click's stripping of ANSI
codes on pipes, say) hides what a terminal would act on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pty = pytest.importorskip("pty")
ROOT = Path(__file__).parents[1]

# a clipboard write (OSC 52), a window title, a screen clear, a cursor move, a bell, a
# right-to-left override ("Trojan source")
PAYLOAD = "\x1b]52;c;aGk=\x07\x1b]0;pwn\x07\x1b[2J\x1b[5A\x07\u202e"
SGR = re.compile(r"\x1b\[[0-9;]*m")  # netdsl's own colours


def on_terminal(*args: str, cwd: Path) -> tuple[int, str]:
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "NETDSL_DEBUG": ""}
    p = subprocess.Popen([sys.executable, "-m", "netdsl", *args], stdin=slave, stdout=slave,
                         stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return p.wait(timeout=120), out.decode("utf-8", "replace")


def assert_inert(text: str) -> None:
    rest = SGR.sub("", text)
    for bad in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert bad not in rest, f"{bad!r} reached the terminal: {rest!r}"


SPEC = """model M {{
  input x: [3, 8, 8]
  x -> Conv2d(4, 3, padding_mode={padding_mode}) -> Flatten -> Linear(2, init={init}) -> y
  output y
}}
train M {{
  data = synthetic(samples=8, shape=[3, 8, 8], classes=2)
  loss = CrossEntropyLoss(y, label)
  optimizer = SGD(lr=0.1)
  device = {device}
  precision = {precision}
  checkpoint = Checkpoint(keep="best", monitor={monitor})
}}
"""
GOOD = {"padding_mode": '"zeros"', "init": "none", "device": '"cpu"', "precision": '"fp32"',
        "monitor": '"val.loss"'}


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "good.net").write_text(SPEC.format(**GOOD), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("where", sorted(GOOD))
def test_strings_in_a_spec(where, folder):
    """Each string the spec's checks quote back in their messages."""
    path = folder / "bad.net"
    path.write_text(SPEC.format(**{**GOOD, where: '"' + PAYLOAD + '"'}), encoding="utf-8")
    code, out = on_terminal("check", "bad.net", cwd=folder)
    assert code == 1 and "error[" in out
    assert_inert(out)


@pytest.mark.parametrize("command", [("check",), ("summary",), ("compile", "--no-train"), ("render", "--format", "dot")])
def test_a_file_name(command, folder):
    name = f"x{PAYLOAD.replace(chr(0x2e), '')}.net"  # no '.' in the payload part of a file name
    try:
        (folder / name).write_text(SPEC.format(**GOOD).replace("Linear(2", "Linear(2, bogus=1"), encoding="utf-8")
    except OSError:
        pytest.skip("this file system refuses control characters in names")
    code, out = on_terminal(command[0], name, *command[1:], cwd=folder)
    assert code == 1 and "bogus" in out  # the name is in the message, made inert
    assert_inert(out)
    code, out = on_terminal(command[0], f"missing{PAYLOAD}.net", *command[1:], cwd=folder)
    assert code != 0
    assert_inert(out)


@pytest.mark.parametrize("args", [
    ("summary", "good.net", "--model", PAYLOAD),
    ("render", "good.net", "--format", "dot", "--expand", PAYLOAD),
    ("run", "good.net", "--device", PAYLOAD),
    ("run", "good.net", "--resume", PAYLOAD),
    ("run", "good.net", "--set", f"optimizer.lr={PAYLOAD}"),
    ("eval", "good.net", "--weights", PAYLOAD),
    ("--allow-layer", PAYLOAD, "check", "good.net"),
])
def test_option_values(args, folder):
    code, out = on_terminal(*args, cwd=folder)
    assert code != 0 and "Traceback" not in out
    assert_inert(out)
