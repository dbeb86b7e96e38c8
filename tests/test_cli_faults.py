"""Faults at the command line's edges are located errors, never E900: a file with no model to
compile, a "spec" that never ends, a full output device (issue 18)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def netdsl(*args, stdout=subprocess.PIPE, timeout=60):
    return subprocess.run([sys.executable, "-m", "netdsl", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "block B(c) {\n  input x\n  output x -> Linear(c)\n}\n"])
def test_compiling_a_file_without_a_model_is_E502(text, tmp_path):
    path = tmp_path / "no_model.net"
    path.write_text(text)
    r = netdsl("compile", str(path))
    assert r.returncode == 1
    assert "error[E502]" in r.stderr and "defines no model" in r.stderr
    assert "Traceback" not in r.stderr and "E900" not in r.stderr and r.stdout == ""


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_a_file_that_never_ends_is_E501_at_once():
    r = netdsl("check", "/dev/zero", timeout=30)
    assert r.returncode == 1
    assert "error[E501]" in r.stderr and "too large to be a spec" in r.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("args", [("summary", "specs/lenet.net"), ("compile", "specs/resnet18.net", "--no-train"),
                                  ("render", "specs/lenet.net", "--format", "dot", "-o", "-")])
def test_a_full_output_device_is_E410_in_one_line(args):
    with open("/dev/full", "w") as full:
        r = netdsl(*args, stdout=full)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == ["netdsl: error[E410]: cannot write the output: no space left on device"]
