"""Starting and resuming runs: the run folder, the resolved config, and the checks before a Trainer."""

from __future__ import annotations

from pathlib import Path

import yaml

from nmt.checkpoint import check_compatible, open_checkpoint
from nmt.config import Config, apply_overrides, config_from_dict
from nmt.data.prepare import read_manifest
from nmt.errors import CheckpointError, ConfigError, DataError
from nmt.files import write_atomically
from nmt.train.distributed import first_process
from nmt.train.loop import Trainer


def start_run(config: Config) -> Path:
    """Check the run folder is free and record the resolved config in it."""
    run_dir = Path(config.train.run_dir)
    if (run_dir / "last").exists():
        raise ConfigError(f"run folder {run_dir} already holds checkpoints: continue it with "
                          f"nmt train --resume {run_dir}, or set train.run_dir to a new folder")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create run folder {run_dir}: {e.strerror}") from None
    if first_process():  # under torchrun, the first process writes
        write_atomically(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    return run_dir


def train(config: Config, stream=None) -> Path:
    read_manifest(config.data.prepared)  # fail on missing data before the run folder is made
    start_run(config)
    return Trainer(config, stream=stream).run()


def resume(run_dir: Path, overrides: list[str] = (), stream=None) -> Path:
    """Continue the run in `run_dir` from its last checkpoint, with optional config overrides."""
    run_dir = Path(run_dir)
    last = run_dir / "last"
    if not run_dir.is_dir():
        raise CheckpointError(f"cannot resume {run_dir}: no such run folder; check the path, "
                              f"or start a new run with nmt train --config CONFIG")
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
