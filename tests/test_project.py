"""The project's promises about itself: README commands, CI, packaging."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", quick, re.S)]


def test_readme_has_exactly_two_setup_commands_main_job_then_tests():
    run, test = readme_commands()
    assert "netdsl run specs/mnist.net" in run and run.count("\n") == 0
    assert test.endswith("pytest") and test.count("\n") == 0


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == readme_commands()[1]


def test_every_spec_named_in_the_readme_exists():
    text = (ROOT / "README.md").read_text()
    for name in set(re.findall(r"specs/([\w.]+\.net)", text)):
        assert (ROOT / "specs" / name).exists(), name


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_wheel_ships_the_grammar_and_an_installed_copy_parses(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(ROOT), "-w", str(wheel_dir)], check=True, capture_output=True)
    (wheel,) = wheel_dir.glob("netdsl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "netdsl/grammars/netdsl.lark" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    code = ("import netdsl, sys; assert netdsl.__file__.startswith(sys.argv[1]), netdsl.__file__; "
            "print(netdsl.load(sys.argv[2]).model_names)")
    out = subprocess.run([sys.executable, "-c", code, str(target), str(ROOT / "specs" / "lenet.net")],
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                         check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "['LeNet']"
