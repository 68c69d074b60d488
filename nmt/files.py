"""Reading and writing the toolkit's own files safely.

Writing: a crash never leaves half a file (temporary name, fsync, rename), an output never
replaces one of the command's own inputs, and an output that is a pipe or a device (`-o
/dev/stdout`, a named pipe) is written into, not replaced by a file. Reading: every JSON file of
a run, a checkpoint or a prepared-data folder goes through `read_json`, which checks that it is an
object holding the keys its reader needs.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from nmt.errors import DataError, NmtError


def check_writable(path: Path, inputs: Sequence[Path] = ()) -> None:
    """Refuse, before any work is done, an output whose folder is missing, that is a folder, or
    that is one of the command's `inputs` (it would be destroyed before it is read)."""
    if not path.parent.is_dir():
        raise DataError(f"cannot write {path}: the folder {path.parent} does not exist; create it first")
    if path.is_dir():
        raise DataError(f"cannot write {path}: it is a folder; name a file")
    for source in inputs:
        if source is not None and path.exists() and Path(source).exists() and os.path.samefile(path, source):
            raise DataError(f"cannot write {path}: it is the input {source} itself; name another output file")


def _is_stream(path: Path) -> bool:
    """A FIFO, a character device or a socket: written into, never renamed over."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def write_atomically(path: Path, text: str, inputs: Sequence[Path] = ()) -> None:
    """Write `text` to `path`: to a temporary file beside it, then renamed over it, so that readers
    never see half a file; into it directly when it is a pipe or a device."""
    check_writable(path, inputs)
    if _is_stream(path):
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise DataError(f"cannot write {path}: {e.strerror}") from None
        return
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise DataError(f"cannot write {path}: {e.strerror}") from None


def write_json(path: Path, value) -> None:
    """`value` as indented JSON into `path` (write_atomically), its folder made first: how the
    benchmark scripts write their records after each measurement, so a run cut short keeps them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(value, indent=2) + "\n")


def read_json(path: Path, required: Optional[dict] = None, *, error: type[NmtError] = DataError,
              fix: str = "write it again") -> dict:
    """A JSON object from `path`, with the `required` keys (key -> type); else one `error` naming
    the file, what is wrong with it, and `fix`."""
    if not path.is_file():
        raise error(f"{path} is missing: {fix}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise error(f"{path} is corrupt (not JSON): {fix}") from None
    except OSError as e:
        raise error(f"cannot read {path}: {e.strerror}") from None
    if not isinstance(value, dict):
        raise error(f"{path} is corrupt (a JSON {type(value).__name__}, not an object): {fix}")
    for key, kind in (required or {}).items():
        found = value.get(key)
        allowed = (int, float) if kind is float else kind  # a float key may hold a whole number
        if not isinstance(found, allowed) or (kind in (int, float) and isinstance(found, bool)):
            raise error(f"{path} is corrupt ('{key}' is missing or not a {kind.__name__}): {fix}")
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
