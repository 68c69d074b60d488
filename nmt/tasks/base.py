"""What the trainer knows of a task: this protocol, nothing else.

A task turns its prepared data into batches and says how its model is built and judged:

    task = build_task(config, rank=r, processes=n)   # nmt.tasks: the task the config names
    model = task.build_model()                  # model(batch) -> summed loss (a scalar tensor)
    sampler = task.sampler()                    # sampler.epoch(e) -> the epoch's batches, as index arrays
    batch = task.batch(indices)                 # this process's share, padded: a data.batching.Batch
    for batch in task.valid_batches(): ...      # dev perplexity: sum of model(batch) over sum of batch.num_tokens
    task.dev_references()                       # what dev BLEU decodes and scores (None: no BLEU)

The loss is summed over `batch.num_tokens` tokens; the trainer divides it by the whole batch's
rows or tokens (`batch.total_examples`, `batch.total_tokens`), so no task divides by itself. Batches
are `Batch` objects: the trainer, the CUDA-graph capture and the data loader move, pin and copy
them through `Batch.tensors()`, and key graphs by `Batch.shape_key()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Protocol, Sequence

import numpy as np
from torch import nn

from nmt.data.batching import Batch
from nmt.data.tokenizer import Tokenizer


@dataclass(frozen=True)
class DevReferences:
    """Dev sentences to decode for BLEU: source ids, reference texts, the target tokenizer."""

    sources: Sequence[Sequence[int]]
    references: Sequence[str]
    tokenizer: Tokenizer


class Sampler(Protocol):
    # the epoch's batches: a list, or an Epoch made as it is read (nmt/data/samplers.py); either
    # has len(), iteration and epoch[start:], the batches from `start` on
    def epoch(self, epoch: int) -> Sequence[np.ndarray]: ...

    def padding_fraction(self, batches: Iterable[np.ndarray]) -> float: ...

    def shape(self, batch: np.ndarray) -> tuple: ...  # batches of one shape class collate to one shape_key


class Task(Protocol):
    tokenizer_files: tuple  # (source, target) tokenizer models, copied into every checkpoint
    train_size: int  # training examples

    def build_model(self) -> nn.Module: ...

    def sampler(self) -> Sampler: ...

    def batch(self, indices: np.ndarray) -> Batch: ...

    def valid_batches(self) -> Iterator[Batch]: ...

    def dev_references(self) -> Optional[DevReferences]: ...
