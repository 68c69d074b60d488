"""Translation: a prepared parallel corpus -> batches of sentence pairs -> the seq2seq model's loss."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from nmt.config import Config
from nmt.data.batching import ParallelBatch, ParallelData, collate
from nmt.data.samplers import BucketSampler, StaticShapeSampler
from nmt.data.corpus import read_lines
from nmt.data.prepare import read_manifest, tokenizer_files
from nmt.data.tokenizer import Tokenizer
from nmt.model import Seq2Seq, build_model
from nmt.tasks.base import DevReferences


class TranslationTask:
    def __init__(self, config: Config, *, rank: int = 0, processes: int = 1):
        """`rank` of `processes`: under torchrun each process trains on its share of every batch."""
        self.config, self.rank, self.processes = config, rank, processes
        prepared = Path(config.data.prepared)
        self.manifest = read_manifest(prepared)
        self.tokenizer_files = tokenizer_files(prepared)
        self.train_data = ParallelData(prepared, "train")
        self.valid_data = ParallelData(prepared, "valid")
        self.prepared = prepared
        self.train_size = len(self.train_data)
        t = config.train
        assert t.static_shapes in (True, False), "train.static_shapes: auto is resolved by the Trainer (resolve_auto)"
        if t.static_shapes:
            self._sampler = StaticShapeSampler(self.train_data.lengths("src"), self.train_data.lengths("tgt"),
                                               batch_size=t.batch_size, max_tokens=t.max_tokens,
                                               tgt_multiple=t.tgt_multiple, seed=t.seed,
                                               row_multiple=8 * processes)
        else:
            self._sampler = BucketSampler(self.train_data.lengths("src"), self.train_data.lengths("tgt"),
                                          batch_size=t.batch_size,
                                          max_tokens=t.max_tokens, pool=t.bucket_pool, seed=t.seed)

    def build_model(self) -> Seq2Seq:
        return build_model(self.config, self.manifest["src_vocab_size"], self.manifest["tgt_vocab_size"])

    def sampler(self):
        return self._sampler

    def batch(self, indices: np.ndarray) -> ParallelBatch:
        """This process's share of a batch (rows rank, rank + processes, ...), padded; alone, the share
        is the whole batch. The totals count the whole batch, every process's share."""
        share = indices[self.rank::self.processes]
        if isinstance(self._sampler, StaticShapeSampler):
            rows, _, width = self._sampler.shape(indices)
            batch = collate(self.train_data, share, rows=rows // self.processes, tgt_width=width)
        elif len(share) == 0:  # fewer sentences than processes: this one trains on one empty row
            batch = collate(self.train_data, share, rows=1, tgt_width=1)
        else:
            batch = collate(self.train_data, share)
        batch.total_examples = len(indices)
        batch.total_tokens = int(self.train_data.lengths("tgt")[indices].sum()) + len(indices)
        return batch

    def valid_batches(self) -> Iterator[ParallelBatch]:
        """The whole valid split (empty sources left out), shortest first, train.batch_size at a time."""
        nonempty = [i for i in range(len(self.valid_data)) if self.valid_data.src_lens[i] > 0]
        nonempty.sort(key=lambda i: self.valid_data.src_lens[i])
        size = self.config.train.batch_size
        for start in range(0, len(nonempty), size):
            yield collate(self.valid_data, nonempty[start:start + size])

    def dev_references(self) -> Optional[DevReferences]:
        count = min(self.config.train.eval_bleu_sentences, len(self.valid_data))
        if not count:
            return None
        references = read_lines(self.prepared / "valid.tgt.txt", allow_empty=True)[:count]
        sources = [self.valid_data.sentence("src", i).tolist() for i in range(count)]
        return DevReferences(sources, references, Tokenizer(self.tokenizer_files[1]))
