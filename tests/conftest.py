"""Shared test fixtures: golden files (`pytest --update-goldens` rewrites them)."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).parent


def pytest_addoption(parser):
    parser.addoption("--update-goldens", action="store_true", default=False,
                     help="rewrite golden files with the current output instead of comparing")


@pytest.fixture
def golden(request):
    """`golden(relative_path, text)`: compare `text` with the file at tests/<relative_path>;
    with --update-goldens, write it instead. A missing golden fails (and says how to create it)."""
    update = request.config.getoption("--update-goldens")

    def check(relative_path: str, text: str) -> None:
        path = TESTS / relative_path
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"no golden file {relative_path}; run pytest --update-goldens to create it")
        want = path.read_text(encoding="utf-8")
        assert text == want, f"output differs from {relative_path} (pytest --update-goldens to accept)"

    return check


@pytest.fixture
def cli(capsys, monkeypatch):
    """`cli(args)`: `netdsl ARGS` in this process, without colours -> (exit status, stdout,
    stderr)."""
    from netdsl.cli import main

    monkeypatch.setenv("NO_COLOR", "1")

    def run(args) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in args])
            raise SystemExit(0)
        out = capsys.readouterr()
        return exit_info.value.code or 0, out.out, out.err

    return run
