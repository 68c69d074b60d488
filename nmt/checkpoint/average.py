"""`nmt average`: the mean of several checkpoints' weights, as a checkpoint that translates.

Averaging the last or best few checkpoints of one run usually adds a little BLEU for free. The
result has no optimizer state, so it cannot resume training.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nmt
from nmt.checkpoint.load import check_compatible, open_checkpoint
from nmt.checkpoint.store import _save_tensors, ranked_by_score, sha256, write_json
from nmt.errors import CheckpointError


def best_checkpoints(run_dir: Path, count: int) -> list[Path]:
    """The `count` checkpoints of a run with the best dev scores, best first: the ones that
    pruning keeps with train.keep_best = count."""
    ranked = ranked_by_score(run_dir)
    if not ranked:
        raise CheckpointError(f"{run_dir} has no evaluated checkpoints: train until the first evaluation "
                              f"(train.eval_every), or pass checkpoint folders")
    return ranked[:count]


def average_checkpoints(folders: list[Path], out: Path) -> Path:
    """Write a checkpoint whose weights are the mean of `folders`' weights (one model, one data)."""
    if out.exists():
        raise CheckpointError(f"{out} already exists: choose another --output or remove it")
    checkpoints = [open_checkpoint(f) for f in folders]
    first = checkpoints[0]
    total, dtypes = None, {}
    for checkpoint in checkpoints:
        check_compatible(first.identity(), checkpoint.identity(), found_name=str(checkpoint.folder),
                         expected_name=str(first.folder), fix="average checkpoints of one run only")
        if checkpoint.meta.get("run_id") != first.meta.get("run_id"):
            raise CheckpointError(f"{checkpoint.folder} comes from another run than {first.folder} (their run ids "
                                  f"differ): average checkpoints of one run only")
        weights = checkpoint.weights()
        if total is None:
            total, dtypes = {k: v.double() for k, v in weights.items()}, {k: v.dtype for k, v in weights.items()}
        elif weights.keys() != total.keys() or any(weights[k].shape != total[k].shape for k in total):
            raise CheckpointError(f"{checkpoint.folder} has other tensors than {first.folder}: "
                                  f"average checkpoints of one run only")
        else:
            for k, v in weights.items():
                total[k] += v.double()
    mean = {k: (v / len(checkpoints)).to(dtypes[k]).contiguous() for k, v in total.items()}
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _save_tensors(mean, tmp / "model.safetensors", {"format": "pt", "nmt_version": nmt.__version__})
        write_json(tmp / "config.json", first.config.to_dict())
        for name in first.meta["tokenizers"]:
            shutil.copyfile(first.folder / name, tmp / name)
        write_json(tmp / "meta.json", {**first.meta, "weights_sha256": sha256(tmp / "model.safetensors"),
                                       "averaged_from": [str(c.folder) for c in checkpoints]})
        tmp.rename(out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"could not write {out}: {e.strerror}; free space or fix permissions") from None
    return out
