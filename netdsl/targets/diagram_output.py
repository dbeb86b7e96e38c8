"""Writing diagrams: DOT text as is, SVG/PNG/PDF through graphviz's `dot`, files atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import graphviz

from ..diagnostics import Diagnostic, NetdslError, did_you_mean

FORMATS = ("svg", "png", "pdf", "dot")
_EXTENSIONS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}
INSTALL_HINT = ("install graphviz (it provides `dot`): `apt-get install graphviz` (Debian/Ubuntu), "
                "`brew install graphviz` (macOS), `conda install graphviz`, or see "
                "https://graphviz.org/download/; `.dot` output works without it")


def unwritable(message: str, hint: str | None = None) -> NetdslError:
    """The error for a diagram that cannot be written (E505)."""
    return NetdslError([Diagnostic("E505", message, hint=hint)])


def output_format(path: str | Path | None, fmt: str | None) -> str:
    """The format to write: `fmt` when given, else the one `path`'s extension names."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise unwritable(f"unknown format '{fmt}' (choose one of {', '.join(FORMATS)})",
                             did_you_mean(fmt, FORMATS))
        return fmt
    ext = Path(str(path)).suffix.lower() if path not in (None, "-") else ""
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    what = f"extension '{ext}'" if ext else "no extension"
    raise unwritable(f"cannot tell the format of '{path}' ({what})",
                     "name the file .svg, .png, .pdf or .dot, or pass --format")


def to_bytes(dg: graphviz.Digraph, fmt: str) -> bytes:
    """The diagram in a format: DOT text as is, anything else through the `dot` program."""
    if fmt == "dot":
        return dg.source.encode("utf-8")
    if fmt not in FORMATS:
        raise unwritable(f"unknown format '{fmt}' (choose one of {', '.join(FORMATS)})")
    if shutil.which("dot") is None:
        raise unwritable(f"cannot write {fmt}: graphviz's `dot` program is not installed",
                         INSTALL_HINT)
    try:
        return graphviz.pipe("dot", fmt, dg.source.encode("utf-8"), quiet=True)
    except graphviz.ExecutableNotFound:
        raise unwritable(f"cannot write {fmt}: graphviz's `dot` program is not installed",
                         INSTALL_HINT) from None
    except graphviz.CalledProcessError as exc:  # a bug of ours or of dot; say what dot said
        msg = (exc.stderr or b"").decode("utf-8", "replace").strip() or str(exc)
        raise RuntimeError(f"graphviz `dot -T{fmt}` failed: {msg}") from None


def _new_file_mode(path: Path) -> int:
    """The mode `path` has, or the one a new file gets under the current umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def save(dg: graphviz.Digraph, path: str | Path, fmt: str | None = None) -> Path:
    """Write the diagram to `path` (format from `fmt` or the extension). The file appears
    whole or not at all: it is written beside its target and renamed into place."""
    path = Path(path)
    fmt = output_format(path, fmt)
    directory = path.parent
    if path.is_dir():
        raise unwritable(f"cannot write {path}: it is a directory")
    if not directory.is_dir():
        raise unwritable(f"cannot write {path}: directory {directory} does not exist")
    data = to_bytes(dg, fmt)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise unwritable(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _new_file_mode(path))  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise unwritable(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path
