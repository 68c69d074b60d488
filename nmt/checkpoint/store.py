"""Writing checkpoints: atomically, so that a crash at any moment leaves every checkpoint whole.

A checkpoint is a folder:
  model.safetensors       the weights
  trainer.safetensors     optimizer tensors and random-number-generator states
  trainer.json            step, epoch, position in the epoch, best score, schedule, optimizer settings
  config.json             the resolved config: the model is rebuilt from it, no YAML needed
  meta.json               format, toolkit version, the tokenizer models' and the weights' checksums
  spm.model or src.model + tgt.model   the tokenizers, so a checkpoint translates on its own
It is written under a temporary name, flushed, and renamed into place; `last` and `best` in the
run folder are symbolic links swapped atomically to the newest and best checkpoint.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

import nmt
from nmt.config import Config
from nmt.errors import TrainingError

CHECKPOINTS = "checkpoints"
FORMAT = 1  # bump when the layout changes; loading refuses formats it does not know


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")


def sha256(path: Path) -> str:
    """The file's SHA-256, read in blocks (a large model's weights need not fit in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def optimizer_to_tensors(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON-able settings."""
    tensors, scalars = {}, {}
    for param_id, values in state_dict["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param_id}.{key}"] = value
    groups = [{k: float(v) if torch.is_tensor(v) else v for k, v in group.items()}  # a graph's tensor lr
              for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return tensors


def save_checkpoint(run_dir: Path, *, model, optimizer, trainer_state: dict, config: Config,
                    tokenizer_files: tuple[Path, Path], score: Optional[float] = None, best: bool = False,
                    keep_best: int = 1, extra_tensors: Optional[dict] = None) -> Path:
    """Write checkpoints/step-N atomically, point `last` (and `best`) at it, prune the rest.

    `score` is the dev score of these weights (higher is better; None if not evaluated): the
    `keep_best` best-scoring checkpoints survive pruning besides the one `last` points at.
    `extra_tensors` join the optimizer's in trainer.safetensors (a language model's carried state,
    the trained weights beside an average).
    """
    folder_name = f"step-{trainer_state['step']:08d}"
    root = run_dir / CHECKPOINTS
    final = root / folder_name
    tmp = root / f".{folder_name}.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in [*root.glob(".step-*.tmp"), *root.glob(".step-*.old")]:  # left by a crash
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        weights = {k: v.detach().cpu().contiguous() for k, v in unique_state(model).items()}
        _save_tensors(weights, tmp / "model.safetensors", {"format": "pt", "nmt_version": nmt.__version__})
        opt_tensors, opt_settings = optimizer_to_tensors(optimizer.state_dict())
        _save_tensors({**opt_tensors, **rng_tensors(), **(extra_tensors or {})}, tmp / "trainer.safetensors")
        write_json(tmp / "trainer.json", {**trainer_state, "score": score, "optimizer": opt_settings})
        write_json(tmp / "config.json", config.to_dict())
        src_model, tgt_model = tokenizer_files
        names = (Path(src_model).name,) if src_model == tgt_model else ("src.model", "tgt.model")
        for name, source in zip(names, (src_model, tgt_model)):
            shutil.copyfile(source, tmp / name)
        write_json(tmp / "meta.json", {
            "format": FORMAT,
            "nmt_version": nmt.__version__,
            "tokenizers": {name: sha256(tmp / name) for name in names},
            "weights_sha256": sha256(tmp / "model.safetensors"),
            "run_id": trainer_state.get("run_id", ""),
        })
        for path in tmp.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        if final.exists():
            _remove(final)
        tmp.rename(final)
        _fsync_dir(root)
        for link in ("last",) + (("best",) if best else ()):
            _point(run_dir / link, Path(CHECKPOINTS) / folder_name)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        where = e.filename or tmp
        raise TrainingError(f"could not write a checkpoint to {where}: {e.strerror}; "
                            f"free space or fix permissions, then resume with nmt train --resume {run_dir}") from None
    _prune(run_dir, keep_best)
    return final


def _save_tensors(tensors: dict, path: Path, metadata: Optional[dict] = None) -> None:
    """safetensors' save_file, with a failed write (a full disk, say) as an OSError naming the file."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as e:
        raise OSError(errno.EIO, str(e).splitlines()[0], str(path)) from None


def _point(link: Path, target: Path) -> None:
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _prune(run_dir: Path, keep_best: int) -> None:
    """Remove checkpoints that are neither `last`, `best`, nor among the `keep_best` best scores."""
    keep = {(run_dir / link).resolve() for link in ("last", "best") if (run_dir / link).is_symlink()}
    keep |= {folder.resolve() for folder in ranked_by_score(run_dir)[:keep_best]}
    for folder in (run_dir / CHECKPOINTS).glob("step-*"):
        if folder.resolve() not in keep:
            _remove(folder)


def ranked_by_score(run_dir: Path) -> list[Path]:
    """A run's evaluated checkpoints, best dev score first (ties: the later step first)."""
    scored = []
    for folder in (run_dir / CHECKPOINTS).glob("step-*"):
        try:
            score = json.loads((folder / "trainer.json").read_text(encoding="utf-8")).get("score")
        except (OSError, ValueError, AttributeError):
            continue  # half-deleted or foreign: leave it alone
        if isinstance(score, (int, float)):
            scored.append((score, folder.name, folder))
    return [folder for _, _, folder in sorted(scored, reverse=True)]


def _remove(folder: Path) -> None:
    """Delete a checkpoint folder so that a crash half way leaves no half checkpoint named like
    one: rename it to a hidden name first (the next save clears such leftovers)."""
    doomed = folder.with_name(f".{folder.name}.old")
    if doomed.exists():
        shutil.rmtree(doomed, ignore_errors=True)
    os.replace(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def unique_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without aliases: tied weights (one tensor under two names) are stored once."""
    seen, unique = set(), {}
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        unique[name] = tensor
    return unique
