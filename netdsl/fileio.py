"""Writing output files whole or not at all (compiled source, diagrams)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


# temporary files being written: the command line's Ctrl-C handler, which ends the process at
# once (no `finally` runs), removes them first
PENDING: set[str] = set()


class WriteError(Exception):
    """Why a file could not be written; callers turn it into their own diagnostic."""


def check_writable(path: Path) -> None:
    """Refuse a directory or a missing parent before any work is done."""
    if path.is_dir():
        raise WriteError("it is a directory")
    if not path.parent.is_dir():
        raise WriteError(f"directory {path.parent} does not exist")


def _mode(path: Path) -> int:
    """The mode `path` has, or the one a new file gets under the current umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def write_whole(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path` and rename it into place, keeping the
    mode the file had (mkstemp makes files private). Raises WriteError; leaves nothing behind."""
    check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError(exc.strerror or str(exc)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _mode(path))
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise WriteError(exc.strerror or str(exc)) from None
        raise
