"""Token ids on disk -> padded batches of sentences of similar length.

The paper grouped sentences of roughly equal length into a batch (random batches wasted most of
the computation on padding; bucketing was a 2x speed-up). `BucketSampler` does that: shuffle,
cut into pools of `pool` batches, sort each pool by length, cut it into batches, shuffle the
batches. Everything is drawn from a generator seeded with (seed, epoch), so the batches of an
epoch can be rebuilt exactly on resume.
"""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.errors import DataError


class ParallelData:
    """One split of a prepared-data folder, memory-mapped (never unpickled); a language model's
    folder has the target side only (`sides=("tgt",)`)."""

    def __init__(self, folder: str | Path, split: str, sides: tuple[str, ...] = ("src", "tgt")):
        folder = Path(folder)
        self.sides = {}
        for side in sides:
            ids_path, offsets_path = folder / f"{split}.{side}.ids.npy", folder / f"{split}.{side}.offsets.npy"
            if not ids_path.is_file() or not offsets_path.is_file():
                raise DataError(f"{folder} has no '{split}' split ({ids_path.name} missing): run nmt preprocess with --{split}")
            ids = _load_array(ids_path, mmap_mode="r")
            offsets = _load_array(offsets_path, mmap_mode="r")  # read where a batch needs them, not copied
            if offsets.ndim != 1 or offsets[-1] != len(ids):
                raise DataError(f"{offsets_path} does not match {ids_path.name}: run nmt preprocess again")
            self.sides[side] = (ids, offsets)
        self.tgt_lens = _lengths(self.sides["tgt"][1])
        self.src_lens = _lengths(self.sides["src"][1]) if "src" in self.sides else self.tgt_lens
        if len(self.src_lens) != len(self.tgt_lens):
            raise DataError(f"{folder}: the {split} split has different source and target counts: run nmt preprocess again")

    def __len__(self) -> int:
        return len(self.src_lens)

    def sentence(self, side: str, index: int) -> np.ndarray:
        ids, offsets = self.sides[side]
        return ids[offsets[index]:offsets[index + 1]]


def _lengths(offsets: np.ndarray) -> np.ndarray:
    """(sentences,) int32: each sentence's token count, from the offsets (half the memory of int64;
    a sentence is far shorter than 2**31 tokens)."""
    return np.subtract(offsets[1:], offsets[:-1], dtype=np.int32, casting="unsafe")


def _load_array(path: Path, mmap_mode=None) -> np.ndarray:
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)  # never unpickles
    except (ValueError, OSError) as e:
        raise DataError(f"{path} is corrupt ({str(e).splitlines()[0][:80]}): run nmt preprocess again") from None


@functools.cache
def _field_names(cls: type, device_only: bool) -> tuple[str, ...]:
    """A batch class's tensor fields (those typed Tensor or Optional[Tensor]), optionally without
    the host ones; looked up once per class, as the training loop asks at every step."""
    hints = typing.get_type_hints(cls)
    tensor_types = (torch.Tensor, Optional[torch.Tensor])
    return tuple(f.name for f in fields(cls) if hints[f.name] in tensor_types
                 and not (device_only and f.metadata.get("host")))


class Batch:
    """What every task's batch is to the trainer: tensor fields plus host-side counts.

    Generic code (moving to the device, pinning, CUDA-graph capture) sees a batch only through
    this: `tensors()` are the fields that go to the device (a CUDA graph owns one static copy of
    each, keyed by `shape_key()`); a field marked `host` in its metadata stays on the CPU (packed
    sequences need host lengths); `num_tokens` is what the model's summed loss sums over, and
    `total_examples` / `total_tokens` count the whole batch of every process (the loss divisor):
    its real examples (sentences, for translation; filler rows not counted) and tokens.
    """

    num_tokens: int
    total_examples: int
    total_tokens: int

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields that live on the device, by name (None fields left out)."""
        values = ((name, getattr(self, name)) for name in _field_names(type(self), device_only=True))
        return {name: value for name, value in values if value is not None}

    def shape_key(self) -> tuple:
        """The batch's tensor shapes: batches with equal keys replay one CUDA graph."""
        return tuple((name, tuple(t.shape)) for name, t in self.tensors().items())

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        return replace(self, **{k: t.to(device, non_blocking=non_blocking) for k, t in self.tensors().items()})

    def pin_memory(self) -> "Batch":
        """Page-locked copies of every tensor, host fields too (so that a later copy of them to
        the device need not wait); DataLoader(pin_memory=True) calls this."""
        values = ((name, getattr(self, name)) for name in _field_names(type(self), device_only=False))
        return replace(self, **{name: value.pin_memory() for name, value in values if value is not None})

    def describe(self) -> str:
        return " and ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in self.shape_key())


@dataclass
class ParallelBatch(Batch):
    """Sentence pairs, padded: the translation task's batch."""

    src: torch.Tensor  # (B, S) source ids in reading order, right-padded with PAD
    src_lens: Optional[torch.Tensor] = field(metadata={"host": True})  # (B,) CPU; None: all rows full
    tgt_in: torch.Tensor  # (B, T) BOS y1 .. ym, right-padded
    tgt_out: torch.Tensor  # (B, T) y1 .. ym EOS, right-padded
    num_sentences: int  # real sentences (static batches add empty filler rows)
    num_tokens: int  # real target tokens (with EOS): what the loss sums over
    total_examples: int  # real sentences of the whole batch, every process's share together
    total_tokens: int

    @property
    def size(self) -> int:
        return self.src.size(0)


def gather_padded(ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """(B, width) int64: row i holds ids[starts[i] : starts[i] + lengths[i]], then PAD."""
    columns = np.arange(width)
    inside = columns[None, :] < lengths[:, None]
    positions = np.where(inside, starts[:, None] + columns[None, :], 0)
    return np.where(inside, ids[positions], PAD).astype(np.int64)


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


def collate(data: ParallelData, indices, *, rows: int | None = None, tgt_width: int | None = None) -> ParallelBatch:
    """Pad the sentences at `indices` into a batch.

    By default the batch is as small as the sentences allow and keeps the source lengths (for
    packing). With `rows` and `tgt_width` (static shapes: every source has the same length) the
    batch is filled up to exactly (rows, S) and (rows, tgt_width) with empty rows, and
    `src_lens` is None: the shape is one of a few, so a captured CUDA graph can replay it.
    """
    indices = np.asarray(indices, dtype=np.int64)
    src_ids, src_offsets = data.sides["src"]
    tgt_ids, tgt_offsets = data.sides["tgt"]
    src_lens, tgt_lens = data.src_lens[indices], data.tgt_lens[indices]
    count = len(indices)
    if count == 0:  # only filler rows: a process of a data-parallel job whose share is empty
        empty = torch.full((rows or 1, tgt_width or 1), PAD, dtype=torch.long)
        return ParallelBatch(torch.full((rows or 1, 1), PAD, dtype=torch.long), None, empty, empty.clone(), 0, 0, 0, 0)
    if int(src_lens.min()) == 0:
        raise DataError("a batch holds an empty source sentence: run nmt preprocess again (it drops them)")
    rows = rows or count
    width = tgt_width or int(tgt_lens.max()) + 1
    if width < int(tgt_lens.max()) + 1:
        raise ValueError(f"tgt_width {width} cannot hold a target of {int(tgt_lens.max())} tokens and EOS")
    src = np.full((rows, int(src_lens.max())), PAD, dtype=np.int64)
    src[:count] = gather_padded(src_ids, src_offsets[indices], src_lens, src.shape[1])
    body = gather_padded(tgt_ids, tgt_offsets[indices], tgt_lens, width)  # y1 .. ym, PAD
    tgt_in = np.full((rows, width), PAD, dtype=np.int64)
    tgt_out = np.full((rows, width), PAD, dtype=np.int64)
    tgt_in[:count, 0] = BOS
    tgt_in[:count, 1:] = body[:, :-1]
    tgt_out[:count] = body
    tgt_out[np.arange(count), tgt_lens] = EOS
    static = rows != count or tgt_width is not None
    if static and int(src_lens.max()) != int(src_lens.min()):
        raise ValueError("static batches need one source length")
    tokens = int(tgt_lens.sum()) + count
    return ParallelBatch(torch.from_numpy(src), None if static else torch.from_numpy(src_lens.astype(np.int64)),
                         torch.from_numpy(tgt_in), torch.from_numpy(tgt_out), count, tokens, count, tokens)


def _last_epoch_kept(epoch_method):
    """Keep the batches of the last epoch asked for: a run asks for epoch 0 twice as it starts (to
    count its steps, then to train), and at 12M sentences each costs seconds. A copy of the list is
    returned, so that a caller changing it does not change the next caller's."""

    @functools.wraps(epoch_method)
    def epoch(self, number: int) -> list[np.ndarray]:
        kept = getattr(self, "_kept_epoch", None)
        if kept is None or kept[0] != number:
            kept = self._kept_epoch = (number, epoch_method(self, number))
        return list(kept[1])

    return epoch


def _batch_maxima(lens: np.ndarray, batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """(each batch's longest length, each batch's size, the sum of every length) in a few numpy
    calls over all batches at once; batches are never empty."""
    sizes = np.fromiter(map(len, batches), dtype=np.int64, count=len(batches))
    if not len(batches):
        return sizes, sizes, 0
    flat = lens[np.concatenate(batches)]
    starts = np.zeros(len(batches), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    return np.maximum.reduceat(flat, starts), sizes, int(flat.sum())


def index_dtype(count: int) -> type:
    """int32 indices while they fit: half the memory of int64 for an epoch's order."""
    return np.int32 if count < 2**31 else np.int64


def _permutation(rng: np.random.Generator, count: int) -> np.ndarray:
    """rng.permutation(count) in the index dtype: the same numbers and the same draws (permutation
    shuffles an arange in place, whatever its dtype), half the memory at int32."""
    order = np.arange(count, dtype=index_dtype(count))
    rng.shuffle(order)
    return order


def _stable_argsort(values: np.ndarray) -> np.ndarray:
    """np.argsort(values, kind="stable"), through 16-bit keys where the values fit them: numpy
    radix-sorts those, several times faster than its timsort of wider integers; the same result,
    as a stable sort has only one."""
    if len(values) and 0 <= values.min() and values.max() < 2**16:
        values = values.astype(np.uint16)
    return np.argsort(values, kind="stable")


def _sort_pools(order: np.ndarray, pool_size: int, src_lens: np.ndarray, tgt_lens: np.ndarray) -> None:
    """Sort each run of `pool_size` in `order`, in place, by source length, then target length,
    ties kept in their order: what np.lexsort((tgt, src)) of each pool gives.

    A block of pools at a time: each position becomes one int64 (pool, source length, target
    length, position) in bit fields, all distinct, so one unstable np.sort orders them as the
    stable per-pool sort would, in a fraction of the time of a loop over the pools (876 at 11.2M
    sentences); the keys of one block (about 2**18 positions) are all the memory it takes."""
    block = pool_size * max(1, 2**18 // pool_size)
    tgt_bits, src_bits = int(tgt_lens.max(initial=0)).bit_length(), int(src_lens.max(initial=0)).bit_length()
    position_bits = (min(block, len(order)) - 1).bit_length()
    pool_bits = max(0, (min(block, len(order)) - 1) // pool_size).bit_length()
    fields = pool_bits + src_bits + tgt_bits + position_bits
    for start in range(0, len(order), block):
        part = order[start:start + block]
        if fields > 63:  # lengths beyond any real sentence's: the per-pool sort itself
            for i in range(0, len(part), pool_size):
                run = part[i:i + pool_size]
                run[:] = run[np.lexsort((tgt_lens[run], src_lens[run]))]
            continue
        key = np.repeat(np.arange(-(-len(part) // pool_size), dtype=np.int64), pool_size)[:len(part)]
        key <<= src_bits + tgt_bits + position_bits
        key |= src_lens[part].astype(np.int64) << (tgt_bits + position_bits)
        key |= tgt_lens[part].astype(np.int64) << position_bits
        key |= np.arange(len(part), dtype=np.int64)
        key.sort()
        key &= (1 << position_bits) - 1  # back to positions in the block
        part[:] = part[key]

class BucketSampler:
    """Batches of similar-length sentences; every example exactly once per epoch."""

    def __init__(self, src_lens, tgt_lens, *, batch_size: int, max_tokens: int | None = None,
                 pool: int = 100, seed: int = 1):
        self.src_lens = np.asarray(src_lens, dtype=np.int32)
        self.tgt_lens = np.add(tgt_lens, 1, dtype=np.int32)  # the decoder sees BOS/EOS too
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

    @_last_epoch_kept
    def epoch(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        order = _permutation(rng, len(self.src_lens))
        pool_size = self._pool_size()
        _sort_pools(order, pool_size, self.src_lens, self.tgt_lens)
        batches = []
        for start in range(0, len(order), pool_size):
            batches.extend(self._cut(order[start:start + pool_size]))  # views of `order`: no copies
        return [batches[i] for i in rng.permutation(len(batches))]

    def padding_fraction(self, batches: list[np.ndarray]) -> float:
        """The share of source and target positions in these batches that are padding."""
        real = padded = 0
        for lens in (self.src_lens, self.tgt_lens):
            longest, sizes, total = _batch_maxima(lens, batches)
            real += total
            padded += int((longest * sizes).sum())
        return 1.0 - real / padded if padded else 0.0


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class StaticShapeSampler:
    """Batches with few distinct shapes, for captured CUDA graphs.

    Every batch holds sentences of one exact source length (so the encoder needs no packing and
    its final state sees no padding); target lengths are sorted within a source length and the
    batch's target width is rounded up to a multiple of `tgt_multiple`. A batch has the full row
    count, except the last of each source length: it takes the smallest halving of it that holds
    its sentences, so filler rows stay under half of a batch while the shapes stay few. Row counts
    are multiples of `row_multiple` (8; times the process count under torchrun, so that every
    process gets an equal share). Every example is used exactly once per epoch.
    """

    def __init__(self, src_lens, tgt_lens, *, batch_size: int, max_tokens: int | None = None,
                 tgt_multiple: int = 8, seed: int = 1, row_multiple: int = 8):
        self.src_lens = np.asarray(src_lens, dtype=np.int32)
        self.tgt_lens = np.add(tgt_lens, 1, dtype=np.int32)  # with BOS/EOS
        self.batch_size, self.max_tokens, self.tgt_multiple, self.seed = batch_size, max_tokens, tgt_multiple, seed
        self.row_multiple = row_multiple

    def rows(self, src_len: int, count: int | None = None) -> int:
        """Rows of a batch of this source length: fixed, or as many as max_tokens allows; with
        `count` (the sentences of a group's last batch) the smallest halving that holds them."""
        m = self.row_multiple
        full = self.batch_size if self.max_tokens is None else max(m, self.max_tokens // max(src_len, 1) // m * m)
        rows = full
        while count is not None and count <= round_up(rows // 2, m) < rows:
            rows = round_up(rows // 2, m)
        return rows

    @functools.cached_property
    def _groups(self) -> list[tuple[int, np.ndarray]]:
        """(source length, the indices of its sentences in ascending order) for each length, from
        one stable sort: the same arrays as np.flatnonzero(src_lens == length), without reading
        all the lengths once per length."""
        order = _stable_argsort(self.src_lens).astype(index_dtype(len(self.src_lens)))
        lengths = self.src_lens[order]
        starts = np.flatnonzero(np.r_[True, lengths[1:] != lengths[:-1]]) if len(order) else order
        ends = np.r_[starts[1:], len(order)]
        return [(int(lengths[a]), order[a:b]) for a, b in zip(starts.tolist(), ends.tolist())]

    @_last_epoch_kept
    def epoch(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for length, group in self._groups:
            group = rng.permutation(group)
            group = group[_stable_argsort(self.tgt_lens[group])]
            rows = self.rows(length)
            batches.extend(group[i:i + rows] for i in range(0, len(group), rows))
        return [batches[i] for i in rng.permutation(len(batches))]

    def shape(self, batch: np.ndarray) -> tuple[int, int, int]:
        """(rows, source length, target width) of the padded batch."""
        length = int(self.src_lens[batch[0]])
        return self.rows(length, len(batch)), length, round_up(int(self.tgt_lens[batch].max()), self.tgt_multiple)

    def padding_fraction(self, batches: list[np.ndarray]) -> float:
        if not batches:
            return 0.0
        lengths, sizes, real_src = _batch_maxima(self.src_lens, batches)  # one source length a batch
        longest_tgt, _, real_tgt = _batch_maxima(self.tgt_lens, batches)
        rows = functools.lru_cache(maxsize=None)(self.rows)  # few distinct (length, count) pairs
        padded = sum(rows(length, count) * (length + round_up(width, self.tgt_multiple))
                     for length, count, width in zip(lengths.tolist(), sizes.tolist(), longest_tgt.tolist()))
        return 1.0 - (real_src + real_tgt) / padded if padded else 0.0
