"""Writing output files whole or not at all (compiled source, diagrams, exported models)."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def replacing(path: Path):
    """A temporary file beside `path` (yielded as a Path) for the block to write, renamed into
    place when the block ends without an error, keeping the mode the file had (mkstemp makes
    files private); removed otherwise, and by the command line's Ctrl-C handler (PENDING).
    Raises WriteError, for an OSError inside the block too; leaves nothing behind."""
    check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError(exc.strerror or str(exc)) from None
    os.close(fd)
    PENDING.add(tmp)
    try:
        yield Path(tmp)
        os.chmod(tmp, _mode(path))
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(exc.strerror or str(exc)) from None
    finally:
        PENDING.discard(tmp)
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_whole(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all (see `replacing`). Raises WriteError."""
    with replacing(path) as tmp:
        tmp.write_bytes(data)
