"""Checkpoints: self-describing, verified folders of safetensors and JSON (never pickles).

    store.py    writing one atomically, `last` / `best` links, pruning (used by training)
    load.py     open_checkpoint / load_model / check_compatible (used by translate, resume, average)
    average.py  nmt average
"""

from nmt.checkpoint.average import average_checkpoints, best_checkpoints
from nmt.checkpoint.load import Checkpoint, LoadedModel, check_compatible, load_model, open_checkpoint, resolve
from nmt.checkpoint.store import CHECKPOINTS, FORMAT, save_checkpoint

__all__ = ["CHECKPOINTS", "FORMAT", "Checkpoint", "LoadedModel", "average_checkpoints", "best_checkpoints",
           "check_compatible", "load_model", "open_checkpoint", "resolve", "save_checkpoint"]
