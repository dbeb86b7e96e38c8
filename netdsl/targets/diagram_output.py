"""Writing diagrams: DOT text as is, SVG/PNG/PDF through graphviz's `dot`, files atomically."""

from __future__ import annotations

import shutil
from pathlib import Path

import graphviz

from ..diagnostics import Diagnostic, NetdslError, did_you_mean
from ..fileio import WriteError, check_writable, write_whole

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
        if "out of memory" in msg.lower() or exc.returncode in (-9, 137):  # too large to lay out
            nodes = sum(1 for line in dg.body if " [" in line and " -> " not in line)
            raise unwritable(f"cannot write {fmt}: graphviz's `dot` ran out of memory laying out "
                             f"{nodes:,} nodes",
                             "draw blocks as single nodes (--expand none), or write DOT (--format "
                             "dot) for a tool that lays out large graphs (sfdp, Gephi)") from None
        raise RuntimeError(f"graphviz `dot -T{fmt}` failed: {msg}") from None


def save(dg: graphviz.Digraph, path: str | Path, fmt: str | None = None) -> Path:
    """Write the diagram to `path` (format from `fmt` or the extension). The file appears
    whole or not at all: it is written beside its target and renamed into place."""
    path = Path(path)
    fmt = output_format(path, fmt)
    try:
        check_writable(path)  # before running dot
        write_whole(path, to_bytes(dg, fmt))
    except WriteError as exc:
        raise unwritable(f"cannot write {path}: {exc}") from None
    return path
