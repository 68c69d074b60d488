"""Token ids on disk -> padded batches of sentences of similar length.

The paper grouped sentences of roughly equal length into a batch (random batches wasted most of
the computation on padding; bucketing was a 2x speed-up). `BucketSampler` does that: shuffle,
cut into pools of `pool` batches, sort each pool by length, cut it into batches, shuffle the
batches. Everything is drawn from a generator seeded with (seed, epoch), so the batches of an
epoch can be rebuilt exactly on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.errors import DataError


class ParallelData:
    """One split of a prepared-data folder, memory-mapped (never unpickled)."""

    def __init__(self, folder: str | Path, split: str):
        folder = Path(folder)
        self.sides = {}
        for side in ("src", "tgt"):
            ids_path, offsets_path = folder / f"{split}.{side}.ids.npy", folder / f"{split}.{side}.offsets.npy"
            if not ids_path.is_file() or not offsets_path.is_file():
                raise DataError(f"{folder} has no '{split}' split ({ids_path.name} missing): run nmt preprocess with --{split}")
            try:
                ids = np.load(ids_path, mmap_mode="r", allow_pickle=False)
                offsets = np.load(offsets_path, allow_pickle=False)
            except ValueError as e:
                raise DataError(f"{ids_path} is corrupt ({e}): run nmt preprocess again") from None
            if offsets.ndim != 1 or offsets[-1] != len(ids):
                raise DataError(f"{offsets_path} does not match {ids_path.name}: run nmt preprocess again")
            self.sides[side] = (ids, offsets)
        self.src_lens = np.diff(self.sides["src"][1])
        self.tgt_lens = np.diff(self.sides["tgt"][1])
        if len(self.src_lens) != len(self.tgt_lens):
            raise DataError(f"{folder}: the {split} split has different source and target counts: run nmt preprocess again")

    def __len__(self) -> int:
        return len(self.src_lens)

    def sentence(self, side: str, index: int) -> np.ndarray:
        ids, offsets = self.sides[side]
        return ids[offsets[index]:offsets[index + 1]]


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) source ids in reading order, right-padded with PAD
    src_lens: torch.Tensor  # (B,) on the CPU (packing needs host lengths)
    tgt_in: torch.Tensor  # (B, T) BOS y1 .. ym, right-padded
    tgt_out: torch.Tensor  # (B, T) y1 .. ym EOS, right-padded
    num_tgt_tokens: int  # real target tokens (with EOS): what the loss sums over

    @property
    def size(self) -> int:
        return self.src.size(0)

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        return Batch(self.src.to(device, non_blocking=non_blocking), self.src_lens,
                     self.tgt_in.to(device, non_blocking=non_blocking),
                     self.tgt_out.to(device, non_blocking=non_blocking), self.num_tgt_tokens)

    def pin_memory(self) -> "Batch":
        return Batch(self.src.pin_memory(), self.src_lens, self.tgt_in.pin_memory(),
                     self.tgt_out.pin_memory(), self.num_tgt_tokens)


def pad(sequences: list, *, prefix: int | None = None, suffix: int | None = None) -> torch.Tensor:
    """(B, max_len) int64 tensor of `sequences`, each wrapped in the optional prefix/suffix id."""
    extra = (prefix is not None) + (suffix is not None)
    out = torch.full((len(sequences), max(map(len, sequences)) + extra), PAD, dtype=torch.long)
    for row, seq in enumerate(sequences):
        start = int(prefix is not None)
        if prefix is not None:
            out[row, 0] = prefix
        out[row, start:start + len(seq)] = torch.as_tensor(np.asarray(seq, dtype=np.int64))
        if suffix is not None:
            out[row, start + len(seq)] = suffix
    return out


def collate(data: ParallelData, indices) -> Batch:
    src = [data.sentence("src", i) for i in indices]
    tgt = [data.sentence("tgt", i) for i in indices]
    src_lens = torch.tensor([len(s) for s in src], dtype=torch.long)
    if int(src_lens.min()) == 0:
        raise DataError("a batch holds an empty source sentence: run nmt preprocess again (it drops them)")
    return Batch(src=pad(src), src_lens=src_lens, tgt_in=pad(tgt, prefix=BOS), tgt_out=pad(tgt, suffix=EOS),
                 num_tgt_tokens=sum(len(t) + 1 for t in tgt))


class BucketSampler:
    """Batches of similar-length sentences; every example exactly once per epoch."""

    def __init__(self, src_lens, tgt_lens, *, batch_size: int, max_tokens: int | None = None,
                 pool: int = 100, seed: int = 1):
        self.src_lens = np.asarray(src_lens, dtype=np.int64)
        self.tgt_lens = np.asarray(tgt_lens, dtype=np.int64) + 1  # the decoder sees BOS/EOS too
        self.batch_size, self.max_tokens, self.pool, self.seed = batch_size, max_tokens, pool, seed

    def _pool_size(self) -> int:
        if self.max_tokens is None:
            return self.batch_size * self.pool
        typical = max(1, int(np.median(np.maximum(self.src_lens, self.tgt_lens))))
        return max(1, self.max_tokens // typical) * self.pool

    def _cut(self, chunk: np.ndarray) -> list[np.ndarray]:
        if self.max_tokens is None:
            return [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        # Greedy: grow the batch while (sentences x longest side) stays within max_tokens.
        batches, start, longest = [], 0, 0
        widths = np.maximum(self.src_lens[chunk], self.tgt_lens[chunk])
        for i, width in enumerate(widths.tolist()):
            if i > start and max(longest, width) * (i - start + 1) > self.max_tokens:
                batches.append(chunk[start:i])
                start, longest = i, 0
            longest = max(longest, width)
        batches.append(chunk[start:])
        return batches

    def epoch(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.src_lens))
        pool_size = self._pool_size()
        batches = []
        for start in range(0, len(order), pool_size):
            chunk = order[start:start + pool_size]
            chunk = chunk[np.lexsort((self.tgt_lens[chunk], self.src_lens[chunk]))]  # by source, then target
            batches.extend(self._cut(chunk))
        return [batches[i] for i in rng.permutation(len(batches))]

    def padding_fraction(self, batches: list[np.ndarray]) -> float:
        """The share of source and target positions in these batches that are padding."""
        real = padded = 0
        for b in batches:
            for lens in (self.src_lens[b], self.tgt_lens[b]):
                real += int(lens.sum())
                padded += int(lens.max()) * len(b)
        return 1.0 - real / padded if padded else 0.0
