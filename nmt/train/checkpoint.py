"""Self-describing, safe checkpoints: safetensors for tensors, JSON for everything else.

A checkpoint is a folder:
  model.safetensors       the weights
  trainer.safetensors     optimizer tensors and random-number-generator states
  trainer.json            step, epoch, position in the epoch, best score, optimizer settings
  config.json             the resolved config: the model is rebuilt from it, no YAML needed
  meta.json               toolkit version and the tokenizer models' checksums
  spm.model or src.model + tgt.model   the tokenizers, so a checkpoint translates on its own
It is written under a temporary name, flushed, and renamed into place; `last` and `best` in the
run folder are symbolic links swapped atomically to the newest and best checkpoint. Nothing is
ever unpickled on load.
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
from safetensors.torch import load_file, save_file

import nmt
from nmt.config import Config, config_from_dict
from nmt.errors import CheckpointError, ConfigError, TrainingError

CHECKPOINTS = "checkpoints"
FORMAT = 1  # bump when the layout changes; loading refuses formats it does not know
FILES = ("model.safetensors", "trainer.safetensors", "trainer.json", "config.json", "meta.json")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing: the checkpoint is incomplete, use another one")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint file {path} is corrupt (not JSON): use another checkpoint") from None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], settings: dict) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, param_id, key = name.split(".", 2)
            state.setdefault(int(param_id), {})[key] = value
    for name, value in settings.get("scalars", {}).items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = value
    return {"state": state, "param_groups": settings["param_groups"]}


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return tensors


def restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def save_checkpoint(run_dir: Path, *, model, optimizer, trainer_state: dict, config: Config,
                    tokenizer_files: tuple[Path, Path], score: Optional[float] = None, best: bool = False,
                    keep_best: int = 1) -> Path:
    """Write checkpoints/step-N atomically, point `last` (and `best`) at it, prune the rest.

    `score` is the dev score of these weights (higher is better; None if not evaluated): the
    `keep_best` best-scoring checkpoints survive pruning besides the one `last` points at.
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
        _save_tensors({**opt_tensors, **rng_tensors()}, tmp / "trainer.safetensors")
        write_json(tmp / "trainer.json", {**trainer_state, "score": score, "optimizer": opt_settings})
        write_json(tmp / "config.json", config.to_dict())
        src_model, tgt_model = tokenizer_files
        names = ("spm.model",) if src_model == tgt_model else ("src.model", "tgt.model")
        for name, source in zip(names, (src_model, tgt_model)):
            shutil.copyfile(source, tmp / name)
        write_json(tmp / "meta.json", {
            "format": FORMAT,
            "nmt_version": nmt.__version__,
            "tokenizers": {name: sha256(tmp / name) for name in names},
            "weights_sha256": sha256(tmp / "model.safetensors"),
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
    keep |= {folder.resolve() for folder in _by_score(run_dir)[:keep_best]}
    for folder in (run_dir / CHECKPOINTS).glob("step-*"):
        if folder.resolve() not in keep:
            _remove(folder)


def _by_score(run_dir: Path) -> list[Path]:
    """A run's evaluated checkpoints, best dev score first (ties: the later step first)."""
    scored = []
    for folder in (run_dir / CHECKPOINTS).glob("step-*"):
        try:
            score = json.loads((folder / "trainer.json").read_text(encoding="utf-8")).get("score")
        except (OSError, ValueError):
            continue  # half-deleted or foreign: leave it alone
        if score is not None:
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


def resolve(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (its `best`, else its `last`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found: pass a run folder or a checkpoint folder such as runs/x/best")
    if path.is_file():
        raise CheckpointError(f"{path} is a file, but a checkpoint is a folder (with model.safetensors): "
                              f"pass the folder, e.g. runs/x/best")
    if (path / "model.safetensors").exists() or (path / "config.json").exists():
        return path
    for link in ("best", "last"):
        if (path / link).exists():
            return (path / link).resolve()
    raise CheckpointError(f"{path} holds no checkpoint (no best or last): train first, or pass a checkpoint folder")


def read_meta(folder: Path) -> dict:
    """meta.json, after checking that this version of nmt can read the checkpoint."""
    meta = read_json(folder / "meta.json")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{folder} was written by nmt {meta.get('nmt_version', '?')} in checkpoint format "
                              f"{meta.get('format')}; this nmt {nmt.__version__} reads format {FORMAT}: "
                              f"use a matching version of nmt")
    return meta


def load_config(folder: Path) -> Config:
    try:
        return config_from_dict(read_json(folder / "config.json"))
    except ConfigError as e:
        raise CheckpointError(f"{folder}/config.json does not fit this version of nmt ({e})") from None


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing: the checkpoint is incomplete, use another one")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file ({str(e).splitlines()[0][:80]}): "
                              f"the checkpoint is corrupt, use another one") from None


def unique_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without aliases: tied weights (one tensor under two names) are stored once."""
    seen, unique = set(), {}
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        unique[name] = tensor
    return unique


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load model.safetensors into `model`, naming every tensor that does not fit."""
    weights = load_tensors(folder / "model.safetensors")
    expected = unique_state(model)
    problems = [f"missing {k}" for k in expected if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in expected]
    problems += [f"{k} is {tuple(weights[k].shape)} but the model has {tuple(v.shape)}"
                 for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise CheckpointError(f"{folder} was made for another architecture: {shown}")
    model.load_state_dict(weights, strict=False)  # the aliases of tied weights follow their owner


def best_checkpoints(run_dir: Path, count: int) -> list[Path]:
    """The `count` checkpoints of a run with the best dev scores, best first: the ones that
    pruning keeps with train.keep_best = count."""
    ranked = _by_score(run_dir)
    if not ranked:
        raise CheckpointError(f"{run_dir} has no evaluated checkpoints: train until the first evaluation "
                              f"(train.eval_every), or pass checkpoint folders")
    return ranked[:count]


def average_checkpoints(folders: list[Path], out: Path) -> Path:
    """Write a checkpoint whose weights are the mean of `folders`' weights (one model, one data).

    Averaging the last or best few checkpoints of one run usually adds a little BLEU for free.
    The result translates like any checkpoint; it has no optimizer state, so it cannot resume.
    """
    folders = [resolve(f) for f in folders]
    first = folders[0]
    meta, config = read_meta(first), read_json(first / "config.json")
    total = None
    for folder in folders:
        other = read_json(folder / "config.json")
        if read_meta(folder).get("tokenizers") != meta.get("tokenizers") or other["model"] != config["model"]:
            raise CheckpointError(f"{folder} is another model than {first} (model config or tokenizers differ): "
                                  f"average checkpoints of one run only")
        weights = load_tensors(folder / "model.safetensors")
        if total is None:
            total, dtypes = {k: v.double() for k, v in weights.items()}, {k: v.dtype for k, v in weights.items()}
        elif weights.keys() != total.keys() or any(weights[k].shape != total[k].shape for k in total):
            raise CheckpointError(f"{folder} has other tensors than {first}: average checkpoints of one run only")
        else:
            for k, v in weights.items():
                total[k] += v.double()
    mean = {k: (v / len(folders)).to(dtypes[k]).contiguous() for k, v in total.items()}
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if out.exists():
            raise CheckpointError(f"{out} already exists: choose another --output or remove it")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _save_tensors(mean, tmp / "model.safetensors", {"format": "pt", "nmt_version": nmt.__version__})
        write_json(tmp / "config.json", config)
        for name in meta.get("tokenizers", {}):
            shutil.copyfile(first / name, tmp / name)
        write_json(tmp / "meta.json", {**meta, "weights_sha256": sha256(tmp / "model.safetensors"),
                                       "averaged_from": [str(f) for f in folders]})
        tmp.rename(out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"could not write {out}: {e.strerror}; free space or fix permissions") from None
    return out
