"""Token ids on disk -> padded batches: the prepared split, memory-mapped, and the batch types.

Which sentences form a batch is the samplers' business (nmt/data/samplers.py); this module reads
them (`collate`) and defines what a batch is to the trainer (`Batch`).
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
        if len({len(offsets) for _, offsets in self.sides.values()}) > 1:
            raise DataError(f"{folder}: the {split} split has different source and target counts: run nmt preprocess again")

    def __len__(self) -> int:
        return len(self.sides["tgt"][1]) - 1

    def lengths(self, side: str) -> "Lengths":
        """Each sentence's token count on one side, read from the offsets where asked."""
        return Lengths(self.sides[side if side in self.sides else "tgt"][1])

    @functools.cached_property
    def src_lens(self) -> np.ndarray:
        """Every source length at once (int32): for small splits; the samplers use `lengths`."""
        return self.lengths("src")[:]

    @functools.cached_property
    def tgt_lens(self) -> np.ndarray:
        return self.lengths("tgt")[:]

    def sentence(self, side: str, index: int) -> np.ndarray:
        ids, offsets = self.sides[side]
        return ids[offsets[index]:offsets[index + 1]]


class Lengths:
    """Sentence lengths as an array-like over the (memory-mapped) offsets: lengths[indices] and
    lengths[a:b] read only the offsets they need, so no array of every length is held (at 12M
    sentences that would be 45 MB a side). int32: a sentence is far shorter than 2**31 tokens."""

    def __init__(self, offsets: np.ndarray):
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, where) -> np.ndarray:
        if isinstance(where, slice):
            start, stop, step = where.indices(len(self))
            if step != 1:
                raise ValueError("Lengths are sliced contiguously")
            ends = np.asarray(self.offsets[start:max(start, stop) + 1])
            return np.subtract(ends[1:], ends[:-1], dtype=np.int32, casting="unsafe")
        where = np.asarray(where, dtype=np.int64)
        return np.subtract(self.offsets[where + 1], self.offsets[where], dtype=np.int32, casting="unsafe")


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
    src_lens, tgt_lens = data.lengths("src")[indices], data.lengths("tgt")[indices]
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

