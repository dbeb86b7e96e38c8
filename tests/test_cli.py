"""The command line: version, `python -m netdsl`, help with examples, check and summary, and
the promise that a spec mistake never shows a traceback (exit 1) while a bug says it is one
(exit 70)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netdsl import __version__
from netdsl.cli import cli, main
from netdsl.ops.custom import LAYERS, unregister_layer

ROOT = Path(__file__).parents[1]
SPECS = ROOT / "specs"
TESTS = Path(__file__).parent
TWO_MODELS = """
model Small {
  input x: [4]
  x -> Linear(2) -> y
  output y
}

model Big {
  input x: [4]
  x -> Linear(64) -> ReLU -> Linear(2) -> y
  output y
}
"""
BAD = "model M {\n  input x: [4]\n  x -> Lineer(2) -> y\n  output y\n}\n"


def run(args, capsys, env=None):
    """`netdsl ARGS` in this process: (exit status, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def files(tmp_path):
    (tmp_path / "two.net").write_text(TWO_MODELS)
    (tmp_path / "bad.net").write_text(BAD)
    return tmp_path


@pytest.fixture(autouse=True)
def no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")


# ---- entry points ----------------------------------------------------------------------------
def test_version(capsys):
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"netdsl, version {__version__}"


def test_python_dash_m_and_the_console_script():
    for argv in ([sys.executable, "-m", "netdsl", "--version"],
                 [str(Path(sys.executable).parent / "netdsl"), "-V"]):
        if not Path(argv[0]).exists():
            pytest.skip(f"{argv[0]} is not installed")
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        assert __version__ in done.stdout


def test_python_dash_m_checks_without_torch():
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "netdsl", "check",
                           str(SPECS / "lenet.net"), str(SPECS / "unet.net")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "LeNet: ok" in done.stdout and "UNet: ok for every H % 16 == 0" in done.stdout  # symbolic too
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "torch" not in imported


def test_help_lists_every_command_with_examples(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for name in cli.list_commands(None):
        assert name in out
    assert "Examples:" in out and "--allow-layer" in out


@pytest.mark.parametrize("command", ["check", "summary"])
def test_command_help_is_complete(command, capsys):
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    assert "Examples:" in out and f"netdsl {command} specs/" in out
    assert "--allow-layer" in out


# ---- check -----------------------------------------------------------------------------------
def test_check_valid_specs_exit_0_with_one_line_per_model(files, capsys):
    code, out, err = run(["check", SPECS / "lenet.net", files / "two.net"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    assert lines[0] == f"{SPECS / 'lenet.net'}: LeNet: ok (x[1, 28, 28] -> logits[10]; 44,426 parameters)"
    assert lines[1].endswith("Small: ok (x[4] -> y[2]; 10 parameters)")
    assert lines[2].endswith("Big: ok (x[4] -> y[2]; 450 parameters)")


def test_check_reports_mistakes_and_exits_1(files, capsys):
    code, out, err = run(["check", files / "two.net", files / "bad.net"], capsys)
    assert code == 1
    assert "Small: ok" in out
    assert f"{files / 'bad.net'}:3:8: error[E101]: unknown layer 'Lineer'" in err
    assert "did you mean 'Linear'?" in err
    assert "1 of 2 specs failed" in err
    assert "Traceback" not in err


def test_check_quiet_and_warnings(tmp_path, capsys):
    (tmp_path / "w.net").write_text("model M {\n  input x: [4]\n  h = x -> ReLU\n  x -> Linear(2) -> y\n"
                                    "  output y\n}\n")
    code, out, err = run(["check", "-q", tmp_path / "w.net"], capsys)
    assert (code, out) == (0, "")
    assert "warning[W210]: 'h' is computed but never used" in err


def test_check_missing_file(tmp_path, capsys):
    code, _, err = run(["check", tmp_path / "nope.net"], capsys)
    assert code == 1 and "error[E501]" in err and "no such file" in err


# ---- summary ---------------------------------------------------------------------------------
def test_summary_table(capsys):
    code, out, _ = run(["summary", SPECS / "lenet.net"], capsys)
    assert code == 0
    assert out.startswith("Model: LeNet")
    assert "Total params:         44,426" in out


def test_summary_json_is_one_object_or_a_list(files, capsys):
    code, out, _ = run(["summary", "--json", SPECS / "lenet.net"], capsys)
    data = json.loads(out)
    assert code == 0 and isinstance(data, dict) and data["model"] == "LeNet"
    code, out, _ = run(["summary", "--json", files / "two.net"], capsys)
    data = json.loads(out)
    assert code == 0 and [d["model"] for d in data] == ["Small", "Big"]
    assert [d["total_params"] for d in data] == [10, 450]
    code, out, _ = run(["summary", "--json", "--model", "Big", files / "two.net"], capsys)
    assert json.loads(out)["model"] == "Big"


def test_summary_misspelt_model_is_e502_with_did_you_mean(files, capsys):
    code, out, err = run(["summary", "--model", "big", files / "two.net"], capsys)
    assert code == 1 and out == ""
    assert "error[E502]" in err and "has no model 'big' (it has: Small, Big)" in err
    assert "did you mean 'Big'?" in err


# ---- every command: mistakes exit 1, bugs exit 70 ----------------------------------------------
EXTRA_ARGS = {  # what a command needs besides the spec to get as far as reading it
    "eval": lambda tmp: ["--weights", tmp / "weights.pt"],
    "render": lambda tmp: ["-o", tmp / "out.dot"],
    "compile": lambda tmp: ["-o", tmp / "out.py"],
    "run": lambda tmp: ["--out", tmp / "runs"],
    "export": lambda tmp: ["-f", "pt2", "-o", tmp / "out.pt2"],
}
# every command that reads a spec (`import` reads a Python module: tests/test_import.py;
# `lsp` speaks over stdin: tests/test_lsp.py)
SPEC_COMMANDS = [c for c in cli.list_commands(None) if c not in ("import", "lsp")]
# ... and checks it (`fmt` reads its syntax only: tests/test_fmt.py)
CHECKING_COMMANDS = [c for c in SPEC_COMMANDS if c != "fmt"]


@pytest.mark.parametrize("command", CHECKING_COMMANDS)
def test_a_spec_mistake_never_shows_a_traceback(command, files, capsys):
    (files / "weights.pt").write_bytes(b"")
    extra = EXTRA_ARGS.get(command, lambda tmp: [])(files)
    code, _, err = run([command, files / "bad.net", *extra], capsys)
    assert code == 1, err
    assert "error[E101]: unknown layer 'Lineer'" in err
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize("command", SPEC_COMMANDS)
def test_a_missing_spec_is_a_diagnostic(command, files, capsys):
    (files / "weights.pt").write_bytes(b"")
    extra = EXTRA_ARGS.get(command, lambda tmp: [])(files)
    code, _, err = run([command, files / "missing.net", *extra], capsys)
    assert code in (1, 2), err  # 2: click refused the path before netdsl saw it
    assert "missing.net" in err and "Traceback" not in err


def test_an_internal_error_says_it_is_a_bug(monkeypatch, capsys):
    import netdsl.spec

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(netdsl.spec.Spec, "__init__", broken)
    monkeypatch.delenv("NETDSL_DEBUG", raising=False)
    code, _, err = run(["check", SPECS / "lenet.net"], capsys)
    assert code == 70
    assert "internal error[E900]: RuntimeError: boom" in err
    assert "This is a bug in netdsl, not in your spec" in err
    assert "Traceback" not in err
    monkeypatch.setenv("NETDSL_DEBUG", "1")
    code, _, err = run(["check", SPECS / "lenet.net"], capsys)
    assert code == 70 and "Traceback" in err


# ---- --allow-layer -----------------------------------------------------------------------------
CUSTOM = "model M {\n  input x: [4, 8, 8]\n  x -> custom_layers.Scale(3.0) -> y\n  output y\n}\n"


@pytest.fixture
def custom_spec(tmp_path):
    (tmp_path / "custom.net").write_text(CUSTOM)
    yield tmp_path / "custom.net"
    if "Scale" in LAYERS:
        unregister_layer("Scale")


def test_custom_layer_refused_without_opt_in(custom_spec, capsys):
    code, _, err = run(["check", custom_spec], capsys)
    assert code == 1 and "error[E108]: custom layer 'custom_layers.Scale' is not allowed" in err
    assert "--allow-layer custom_layers:Scale" in err


@pytest.mark.parametrize("where", ["group", "command", "env"])
def test_allow_layer_before_or_after_the_command_or_in_the_environment(where, custom_spec, capsys,
                                                                       monkeypatch):
    args = ["check", custom_spec]
    if where == "group":
        args = ["--allow-layer", "custom_layers:Scale", *args]
    elif where == "command":
        args = [*args, "--allow-layer", "custom_layers:Scale"]
    else:
        monkeypatch.setenv("NETDSL_ALLOW_LAYERS", "custom_layers:Halves, custom_layers:Scale")
    code, out, err = run(args, capsys)
    assert code == 0, err
    assert "M: ok (x[4, 8, 8] -> y[4, 8, 8]; 0 parameters)" in out
    if "Halves" in LAYERS:
        unregister_layer("Halves")


def test_allow_layer_for_summary_render_and_compile(custom_spec, tmp_path, capsys):
    code, out, err = run(["summary", custom_spec, "--allow-layer", "custom_layers:Scale"], capsys)
    assert code == 0, err
    assert "scale1" in out and "Scale" in out
    commands = cli.list_commands(None)
    if "render" in commands:
        code, _, err = run(["render", custom_spec, "-o", tmp_path / "out.dot",
                            "--allow-layer", "custom_layers:Scale"], capsys)
        assert code == 0, err
        assert "Scale" in (tmp_path / "out.dot").read_text()
    if "compile" in commands:
        code, _, err = run(["compile", custom_spec, "--no-train", "-o", tmp_path / "out.py",
                            "--allow-layer", "custom_layers:Scale"], capsys)
        assert code == 0, err
        source = (tmp_path / "out.py").read_text()
        assert "import custom_layers" in source and "custom_layers.Scale(factor=3.0)" in source


def test_allow_layer_of_a_missing_module_is_e109(custom_spec, capsys):
    code, _, err = run(["--allow-layer", "nowhere_to_be_found:Block", "check", custom_spec], capsys)
    assert code == 1
    assert "error[E109]: cannot import module 'nowhere_to_be_found'" in err
    assert "Traceback" not in err


def test_allow_layer_finds_modules_in_the_working_directory(tmp_path):
    """As `python -m` would: the console script's sys.path does not hold the current directory."""
    (tmp_path / "here_layers.py").write_text(
        "from torch import nn\n\nclass Twice(nn.Module):\n    def forward(self, x):\n        return 2 * x\n")
    (tmp_path / "s.net").write_text("model M {\n  input x: [3]\n  x -> here_layers.Twice -> y\n  output y\n}\n")
    script = Path(sys.executable).parent / "netdsl"
    if not script.exists():
        pytest.skip("the netdsl console script is not installed")
    env = {**os.environ, "NO_COLOR": "1"}
    done = subprocess.run([str(script), "--allow-layer", "here_layers:Twice", "check", "s.net"],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "M: ok (x[3] -> y[3]; 0 parameters)" in done.stdout


def test_check_says_when_a_file_defines_no_model(tmp_path):
    from click.testing import CliRunner

    from netdsl.cli import cli

    p = tmp_path / "blocks.net"
    p.write_text("block B(c) {\n input x\n output x -> Linear(c)\n}\n")
    r = CliRunner().invoke(cli, ["check", str(p)])
    assert r.exit_code == 0 and "defines no model" in r.output
