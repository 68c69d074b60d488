"""Tasks: what turns a prepared-data folder into batches and a model into a loss (see base.py)."""

from __future__ import annotations

from nmt.config import Config
from nmt.tasks.base import DevReferences, Task


def build_task(config: Config, *, rank: int = 0, processes: int = 1) -> Task:
    """The task the config describes (translation: the only one yet), for process `rank` of `processes`."""
    from nmt.tasks.translation import TranslationTask

    return TranslationTask(config, rank=rank, processes=processes)


def build_model(config: Config, src_vocab_size: int, tgt_vocab_size: int):
    """The model of the config's task, for vocabularies of these sizes (a checkpoint rebuilds its own)."""
    from nmt.model import build_model as seq2seq

    return seq2seq(config, src_vocab_size, tgt_vocab_size)


__all__ = ["DevReferences", "Task", "build_model", "build_task"]
