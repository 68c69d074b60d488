"""Tasks: what turns a prepared-data folder into batches and a model into a loss (see base.py).

translation.py (the default) and lm.py (`task: lm`); the functions below are the one place that
picks the task a config names.
"""

from __future__ import annotations

from pathlib import Path

from nmt.config import Config
from nmt.tasks.base import DevReferences, Task


def build_task(config: Config, *, rank: int = 0, processes: int = 1) -> Task:
    """The task the config describes, for process `rank` of `processes`."""
    if config.task == "lm":
        from nmt.tasks.lm import LanguageModelTask

        return LanguageModelTask(config, rank=rank, processes=processes)
    from nmt.tasks.translation import TranslationTask

    return TranslationTask(config, rank=rank, processes=processes)


def build_model(config: Config, src_vocab_size: int, tgt_vocab_size: int):
    """The model of the config's task, for vocabularies of these sizes (a checkpoint rebuilds its own)."""
    if config.task == "lm":
        from nmt.model.lm import build_language_model

        return build_language_model(config, tgt_vocab_size)
    from nmt.model import build_model as seq2seq

    return seq2seq(config, src_vocab_size, tgt_vocab_size)


def prepare_data(config: Config, *, overwrite: bool = False) -> dict:
    """`nmt preprocess` for the config's task: the prepared-data folder data.prepared; its manifest."""
    if config.task == "lm":
        from nmt.data.monolingual import prepare_lm

        return prepare_lm(config.data, Path(config.data.prepared), overwrite=overwrite)
    from nmt.data.prepare import prepare

    return prepare(config.data, config.data.prepared, overwrite=overwrite)


__all__ = ["DevReferences", "Task", "build_model", "build_task", "prepare_data"]
