"""Writing files so that a crash never leaves half of one: temporary name, fsync, rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nmt.errors import DataError


def check_writable(path: Path) -> None:
    """Refuse, before any work is done, an output whose folder is missing or that is a folder."""
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: the folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise DataError(f"cannot write {path}: it is a folder; name a file")


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"cannot write {path}: {e.strerror}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
