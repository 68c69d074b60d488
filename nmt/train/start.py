"""Starting and resuming runs: the run folder, the resolved config, and the checks before a Trainer.

One `RunFolder` guards a run folder for the whole of a training process: it is locked (a second
`nmt train` on the same folder is refused while the first runs), and a run that fails before its
first checkpoint leaves nothing behind that would get in the way of the next attempt.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

import yaml

from nmt.checkpoint import check_compatible, open_checkpoint
from nmt.config import Config, apply_overrides, config_from_dict
from nmt.data.prepare import read_manifest
from nmt.errors import CheckpointError, ConfigError, DataError
from nmt.files import write_atomically
from nmt.train.distributed import first_process
from nmt.train.loop import Trainer
from nmt.train.progress import TENSORBOARD

log = logging.getLogger("nmt")
LOCK = ".lock"
OWN_FILES = ("config.yaml", "log.jsonl", TENSORBOARD, "checkpoints", LOCK)  # what training writes in a run folder


@contextlib.contextmanager
def run_folder(run_dir: Path, *, resuming: bool) -> Iterator[Path]:
    """Hold `run_dir` for one training process (only the first process under torchrun).

    A new run gets a folder without checkpoints: one left by an attempt that never saved is
    cleared of that attempt's files first. If a new run fails before its first checkpoint, the
    files it wrote go again (and the folder, if it made it); other files are never touched, and
    a resumed run's folder is never cleared.
    """
    if not first_process():
        yield run_dir
        return
    made = not run_dir.exists()
    lock = _lock(run_dir)  # refused: another process's folder, left exactly as it is
    try:
        if not resuming:
            _start_clean(run_dir)
        yield run_dir
    except BaseException:
        if not resuming and not (run_dir / "last").exists():  # a new run that saved nothing: no half run left
            _remove_own_files(run_dir, folder_too=made)
        raise
    finally:
        with contextlib.suppress(OSError):
            (run_dir / LOCK).unlink()  # while still holding the lock
        lock.close()


def _lock(run_dir: Path):
    """The run folder's lock file, opened and locked; the holder's process id is written in it.

    A holder unlinks the file before it lets go, so a lock taken on a file that is no longer the
    one at that path is taken again on the new one."""
    while True:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock = open(run_dir / LOCK, "a+")
        except OSError as e:
            raise DataError(f"cannot create run folder {run_dir}: {e.strerror}") from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            lock.seek(0)
            holder = lock.read().strip() or "?"
            lock.close()
            raise ConfigError(f"run folder {run_dir} is in use by another nmt train (process {holder}): wait for "
                              f"it to finish, or set train.run_dir to another folder") from None
        try:
            same = os.fstat(lock.fileno()).st_ino == os.stat(run_dir / LOCK).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        lock.close()
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _start_clean(run_dir: Path) -> None:
    if (run_dir / "last").exists():
        raise ConfigError(f"run folder {run_dir} already holds checkpoints: continue it with "
                          f"nmt train --resume {run_dir}, or set train.run_dir to a new folder")
    if (run_dir / "log.jsonl").exists():
        log.info(f"starting over in {run_dir}: the attempt there before saved no checkpoint")
        _remove_own_files(run_dir, folder_too=False, keep=(LOCK,))


def _remove_own_files(run_dir: Path, *, folder_too: bool, keep: tuple = ()) -> None:
    for name in OWN_FILES:
        path = run_dir / name
        if name in keep or not (path.exists() or path.is_symlink()):
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    if folder_too:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if nothing else is in it


def train(config: Config, stream=None) -> Path:
    read_manifest(config.data.prepared)  # fail on missing data before the run folder is made
    with run_folder(Path(config.train.run_dir), resuming=False) as run_dir:
        trainer = Trainer(config, stream=stream)
        if first_process():  # under torchrun, the first process writes; `auto` values as they were resolved
            write_atomically(run_dir / "config.yaml", yaml.safe_dump(trainer.config.to_dict(), sort_keys=False))
        return trainer.run()


def resume(run_dir: Path, overrides: list[str] = (), stream=None) -> Path:
    """Continue the run in `run_dir` from its last checkpoint, with optional config overrides."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"cannot resume {run_dir}: no such run folder; check the path, "
                              f"or start a new run with nmt train --config CONFIG")
    with run_folder(run_dir, resuming=True):  # locked first: no other process moves `last` meanwhile
        last = run_dir / "last"
        if not last.exists():
            raise CheckpointError(f"cannot resume {run_dir}: it holds no checkpoint ({last} is missing); "
                                  f"start a new run with nmt train --config CONFIG")
        checkpoint = open_checkpoint(last)
        raw = checkpoint.config.to_dict()
        raw["train"]["run_dir"] = str(run_dir)
        config = config_from_dict(apply_overrides(raw, list(overrides)))
        check_compatible(checkpoint.identity(), {**checkpoint.identity(), "model": config.to_dict()["model"]},
                         found_name=f"cannot resume {run_dir}: the config with these overrides",
                         expected_name=f"its checkpoint {last}",
                         fix="the model section cannot change on resume, start a new run instead")
        return Trainer(config, resume_from=last.resolve(), stream=stream).run()
