"""Which sentences go into which batch: an epoch's batches, made a block at a time as training reads them.

The paper grouped sentences of roughly equal length into a batch (random batches wasted most of
the computation on padding; bucketing was a 2x speed-up). Both samplers here do that in bounded
memory, whatever the corpus size (the paper's is 12M pairs):

  1. The epoch's order is a pseudo-random permutation of the sentence numbers (`ShuffledOrder`),
     evaluated a stretch at a time: nothing of size N is ever held.
  2. The order is read a block of about 2**18 (bucketed) or 2**20 (static shapes) sentences at a
     time; only that block's lengths are read, from the memory-mapped offsets (`data.batching.Lengths`).
  3. The block's sentences are grouped by length and cut into batches, whose order is shuffled
     within the block. Bucketed: each pool of `pool` batches' worth of sentences is sorted by
     (source, target) length. Static shapes: sentences of one exact source length, target lengths
     sorted; what does not fill a batch waits for the next block (at most a batch per length).

So the sampler's memory is that of a block, flat from 1M to 12M pairs, and the first batch is
ready after one block, not after the whole epoch is built. Everything is drawn from a generator
seeded with (seed, epoch): the batches of an epoch are rebuilt exactly on resume. `Epoch.__len__`
is known without building the batches, except for bucketed batches cut by max_tokens, whose count
takes one pass over the epoch.
"""

from __future__ import annotations

import functools
import itertools
from typing import Callable, Iterable, Iterator

import numpy as np

BUCKET_BLOCK = 2**18  # sentences per block: the batches of ~20 pools of 128 x 100 shuffled together
STATIC_BLOCK = 2**20  # larger: a block's sentences are split over ~100 source lengths


def index_dtype(count: int) -> type:
    """int32 indices while they fit: half the memory of int64."""
    return np.int32 if count < 2**31 else np.int64


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 (wrapping arithmetic): a well-tested 64-bit mixing function."""
    x = x ^ (x >> np.uint64(30))  # a new array; the rest in place
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


class ShuffledOrder:
    """A pseudo-random permutation of range(count), read in slices: order[a:b] is its positions
    a..b-1, computed there, in O(b - a) memory.

    A shuffle of 12M numbers held in memory is 45-90 MB and grows with the corpus; numpy has no
    permutation that can be evaluated piecewise, so this is written here. It is a Feistel network
    (a bijection on 2**bits numbers for any round function, here splitmix64's mixer keyed by
    numbers drawn from the epoch's generator), with cycle walking: a number that lands outside
    range(count) is mapped again until it lands inside, which keeps the bijection (the domain is
    under 4 * count, so that takes about 1.5 passes on average).
    """

    PIECE = 2**16
    ROUNDS = 4  # Luby and Rackoff: four rounds of a random-looking function give a random-looking permutation

    def __init__(self, count: int, rng: np.random.Generator):
        self.count = count
        bits = max(2, (count - 1).bit_length())
        self.half = np.uint64((bits + 1) // 2)  # two halves of equal width
        self.mask = np.uint64((1 << int(self.half)) - 1)
        self.keys = rng.bit_generator.random_raw(self.ROUNDS).astype(np.uint64)

    def __len__(self) -> int:
        return self.count

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        left, right = x >> self.half, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & self.mask)
        return (left << self.half) | right

    def __getitem__(self, where: slice) -> np.ndarray:
        start, stop, step = where.indices(self.count)
        if step != 1:
            raise ValueError("ShuffledOrder is read in contiguous slices")
        out = np.empty(max(0, stop - start), dtype=index_dtype(self.count))
        for at in range(0, len(out), self.PIECE):  # the uint64 temporaries stay a piece's size
            values = self._encrypt(np.arange(start + at, start + min(len(out), at + self.PIECE), dtype=np.uint64))
            outside = np.flatnonzero(values >= self.count)
            while len(outside):  # cycle walking
                values[outside] = self._encrypt(values[outside])
                outside = outside[values[outside] >= self.count]
            out[at:at + len(values)] = values
        return out


class Epoch:
    """An epoch's batches (index arrays), made block by block each time they are read.

    Iterating it twice gives the same batches. `epoch[start:]` is the epoch from batch `start` on
    (what a resumed run reads), `epoch[i]` one batch; `len(epoch)` the number of batches."""

    def __init__(self, blocks: Callable[[], Iterator[list[np.ndarray]]], count: Callable[[], int], start: int = 0):
        self._blocks, self._count, self._start = blocks, count, start

    def __iter__(self) -> Iterator[np.ndarray]:
        batches = itertools.chain.from_iterable(self._blocks())
        return itertools.islice(batches, self._start, None)

    @functools.cached_property
    def _length(self) -> int:
        return max(0, self._count() - self._start)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, where):
        if isinstance(where, slice):
            if where.step not in (None, 1) or where.start is not None and where.start < 0:
                raise ValueError("an Epoch is sliced as epoch[start:stop] with start >= 0")
            if where.stop is None:
                # the count is the whole epoch's, taken from this one (counted at most once)
                return Epoch(self._blocks, lambda: self._start + len(self), self._start + (where.start or 0))
            return list(itertools.islice(self, where.start, where.stop))
        if not 0 <= where < len(self):
            raise IndexError(f"batch {where} of an epoch of {len(self)}")
        return next(itertools.islice(self, where, None))


def _last_epoch_kept(epoch_method):
    """Keep the last Epoch asked for: a run asks for epoch 0 twice as it starts (to count its
    steps, then to train), and counting bucketed batches cut by max_tokens takes a pass."""

    @functools.wraps(epoch_method)
    def epoch(self, number: int) -> Epoch:
        kept = getattr(self, "_kept_epoch", None)
        if kept is None or kept[0] != number:
            kept = self._kept_epoch = (number, epoch_method(self, number))
        return kept[1]

    return epoch


def _shuffled(rng: np.random.Generator, batches: list) -> list:
    return [batches[i] for i in rng.permutation(len(batches))]


def _spread(count: int, most: int) -> np.ndarray:
    """Up to `most` sentence numbers spread evenly over range(count): a sample that does not
    depend on the epoch or on how the corpus is ordered."""
    return np.unique(np.linspace(0, count - 1, min(count, most)).astype(np.int64)) if count else np.zeros(0, np.int64)


def _sorted_pools(pool_size: int, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Positions that sort each run of `pool_size` of a block by source length, then target length,
    ties kept in their order: what np.lexsort((tgt, src)) of each pool gives.

    Each position becomes one int64 (pool, source length, target length, position) in bit fields,
    all distinct, so one unstable np.sort orders them as the stable per-pool sort would, in a
    fraction of the time of a loop over the pools."""
    count = len(src)
    src_bits, tgt_bits = int(src.max(initial=0)).bit_length(), int(tgt.max(initial=0)).bit_length()
    position_bits = max(1, (count - 1).bit_length())
    pool_bits = max(0, (count - 1) // pool_size).bit_length()
    if pool_bits + src_bits + tgt_bits + position_bits > 63:  # lengths beyond any real sentence's
        order = np.arange(count)
        for i in range(0, count, pool_size):
            run = order[i:i + pool_size]
            run[:] = run[np.lexsort((tgt[run], src[run]))]
        return order
    key = np.arange(count, dtype=np.int64) // pool_size
    key <<= src_bits + tgt_bits + position_bits
    key |= src.astype(np.int64) << (tgt_bits + position_bits)
    key |= tgt.astype(np.int64) << position_bits
    key |= np.arange(count, dtype=np.int64)
    key.sort()
    return key & ((1 << position_bits) - 1)


def _stable_argsort(values: np.ndarray) -> np.ndarray:
    """np.argsort(values, kind="stable"), through 16-bit keys where the values fit them: numpy
    radix-sorts those, several times faster than its timsort of wider integers; the same result,
    as a stable sort has only one."""
    if len(values) and 0 <= values.min() and values.max() < 2**16:
        values = values.astype(np.uint16)
    return np.argsort(values, kind="stable")


def _batch_maxima(lens, batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """(each batch's longest length, each batch's size, the sum of every length) in a few numpy
    calls over all batches at once; batches are never empty."""
    sizes = np.fromiter(map(len, batches), dtype=np.int64, count=len(batches))
    if not len(batches):
        return sizes, sizes, 0
    flat = lens(np.concatenate(batches))
    starts = np.zeros(len(batches), dtype=np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    return np.maximum.reduceat(flat, starts), sizes, int(flat.sum())


def _in_groups(batches: Iterable[np.ndarray], size: int = 4096) -> Iterator[list[np.ndarray]]:
    batches = iter(batches)
    while group := list(itertools.islice(batches, size)):
        yield group


class _Sampler:
    """What both samplers share: the source and target lengths, read where a block needs them
    (numpy arrays, or the prepared split's memory-mapped `Lengths`), the target's with BOS/EOS."""

    def __init__(self, src_lens, tgt_lens, seed: int):
        if len(src_lens) != len(tgt_lens):
            raise ValueError("src_lens and tgt_lens differ in length")
        self.src_lens, self._tgt_lens, self.seed = src_lens, tgt_lens, seed

    def __len__(self) -> int:
        return len(self.src_lens)

    def src(self, indices) -> np.ndarray:
        return np.asarray(self.src_lens[indices], dtype=np.int32)

    def tgt(self, indices) -> np.ndarray:
        """Target lengths with BOS/EOS: what the decoder sees."""
        return np.add(self._tgt_lens[indices], 1, dtype=np.int32)

    def _order(self, epoch: int) -> tuple[np.random.Generator, ShuffledOrder]:
        rng = np.random.default_rng([self.seed, epoch])
        return rng, ShuffledOrder(len(self), rng)


class BucketSampler(_Sampler):
    """Batches of similar-length sentences; every example exactly once per epoch."""

    def __init__(self, src_lens, tgt_lens, *, batch_size: int, max_tokens: int | None = None,
                 pool: int = 100, seed: int = 1):
        super().__init__(src_lens, tgt_lens, seed)
        self.batch_size, self.max_tokens, self.pool = batch_size, max_tokens, pool

    @functools.cached_property
    def pool_size(self) -> int:
        if self.max_tokens is None:
            return self.batch_size * self.pool
        sample = _spread(len(self), 65536)
        typical = max(1, int(np.median(np.maximum(self.src(sample), self.tgt(sample))))) if len(sample) else 1
        return max(1, self.max_tokens // typical) * self.pool

    def _cut(self, pool: np.ndarray, src: np.ndarray, tgt: np.ndarray) -> list[np.ndarray]:
        if self.max_tokens is None:
            return [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        # Greedy: grow the batch while (sentences x longest side) stays within max_tokens.
        batches, start, longest = [], 0, 0
        for i, width in enumerate(np.maximum(src, tgt).tolist()):
            if i > start and max(longest, width) * (i - start + 1) > self.max_tokens:
                batches.append(pool[start:i])
                start, longest = i, 0
            longest = max(longest, width)
        batches.append(pool[start:])
        return batches

    def _blocks(self, epoch: int) -> Iterator[list[np.ndarray]]:
        rng, order = self._order(epoch)
        pool_size = self.pool_size
        block = pool_size * max(1, BUCKET_BLOCK // pool_size)  # whole pools
        for start in range(0, len(order), block):
            ids = order[start:start + block]
            src, tgt = self.src(ids), self.tgt(ids)
            by_length = _sorted_pools(pool_size, src, tgt)
            ids, src, tgt = ids[by_length], src[by_length], tgt[by_length]
            batches = []
            for i in range(0, len(ids), pool_size):  # views of `ids`: no copies
                batches.extend(self._cut(ids[i:i + pool_size], src[i:i + pool_size], tgt[i:i + pool_size]))
            yield _shuffled(rng, batches)
            del batches, ids, src, tgt, by_length  # before the next block is made

    def _count(self, epoch: int) -> int:
        if self.max_tokens is not None:  # the greedy cut depends on each pool's sentences
            return sum(map(len, self._blocks(epoch)))
        full, rest = divmod(len(self), self.pool_size)
        return full * -(-self.pool_size // self.batch_size) + -(-rest // self.batch_size)

    @_last_epoch_kept
    def epoch(self, epoch: int) -> Epoch:
        return Epoch(lambda: self._blocks(epoch), lambda: self._count(epoch))

    def padding_fraction(self, batches: Iterable[np.ndarray]) -> float:
        """The share of source and target positions in these batches that are padding."""
        real = padded = 0
        for group in _in_groups(batches):
            for lens in (self.src, self.tgt):
                longest, sizes, total = _batch_maxima(lens, group)
                real += total
                padded += int((longest * sizes).sum())
        return 1.0 - real / padded if padded else 0.0


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class StaticShapeSampler(_Sampler):
    """Batches with few distinct shapes, for captured CUDA graphs.

    Every batch holds sentences of one exact source length (so the encoder needs no packing and
    its final state sees no padding); target lengths are sorted within a source length in a block
    and the batch's target width is rounded up to a multiple of `tgt_multiple`. A batch has the
    full row count, except the last of each source length in the epoch: it takes the smallest
    halving of it that holds its sentences, so filler rows stay under half of a batch while the
    shapes stay few. Row counts are multiples of `row_multiple` (8; times the process count under
    torchrun, so that every process gets an equal share). Every example is used exactly once per
    epoch.
    """

    def __init__(self, src_lens, tgt_lens, *, batch_size: int, max_tokens: int | None = None,
                 tgt_multiple: int = 8, seed: int = 1, row_multiple: int = 8):
        super().__init__(src_lens, tgt_lens, seed)
        self.batch_size, self.max_tokens, self.tgt_multiple = batch_size, max_tokens, tgt_multiple
        self.row_multiple = row_multiple

    def rows(self, src_len: int, count: int | None = None) -> int:
        """Rows of a batch of this source length: fixed, or as many as max_tokens allows; with
        `count` (the sentences of a length's last batch) the smallest halving that holds them."""
        m = self.row_multiple
        full = self.batch_size if self.max_tokens is None else max(m, self.max_tokens // max(src_len, 1) // m * m)
        rows = full
        while count is not None and count <= round_up(rows // 2, m) < rows:
            rows = round_up(rows // 2, m)
        return rows

    @functools.cached_property
    def _length_counts(self) -> np.ndarray:
        """How many sentences have each source length, counted a block at a time."""
        counts = np.zeros(1, dtype=np.int64)
        for start in range(0, len(self), STATIC_BLOCK):
            part = np.bincount(self.src(slice(start, start + STATIC_BLOCK)))
            if len(part) > len(counts):
                counts = np.pad(counts, (0, len(part) - len(counts)))
            counts[:len(part)] += part
        return counts

    def _blocks(self, epoch: int) -> Iterator[list[np.ndarray]]:
        rng, order = self._order(epoch)
        waiting: dict[int, np.ndarray] = {}  # per source length, the sentences short of a full batch
        for start in range(0, len(order), STATIC_BLOCK):
            ids = order[start:start + STATIC_BLOCK]
            src = self.src(ids)
            by_length = _stable_argsort(src)
            ids, src = ids[by_length], src[by_length]
            bounds = np.flatnonzero(np.r_[True, src[1:] != src[:-1], True])
            batches = []
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                length = int(src[a])
                group = ids[a:b] if length not in waiting else np.concatenate([waiting.pop(length), ids[a:b]])
                group = group[_stable_argsort(self.tgt(group))]
                rows = self.rows(length)
                full = len(group) - len(group) % rows
                batches.extend(group[i:i + rows] for i in range(0, full, rows))
                if full < len(group):
                    waiting[length] = group[full:].copy()  # not a view that would keep the whole group
            if start + STATIC_BLOCK >= len(order):  # the epoch's last block: the rest, each length's last batch
                batches.extend(waiting.values())
            yield _shuffled(rng, batches)
            del batches, ids, src, by_length, group  # before the next block is made

    def _count(self) -> int:
        return sum(-(-int(count) // self.rows(length)) for length, count in enumerate(self._length_counts) if count)

    @_last_epoch_kept
    def epoch(self, epoch: int) -> Epoch:
        return Epoch(lambda: self._blocks(epoch), self._count)

    def shape(self, batch: np.ndarray) -> tuple[int, int, int]:
        """(rows, source length, target width) of the padded batch."""
        length = int(self.src(batch[0]))
        return self.rows(length, len(batch)), length, round_up(int(self.tgt(batch).max()), self.tgt_multiple)

    def padding_fraction(self, batches: Iterable[np.ndarray]) -> float:
        real = padded = 0
        rows = functools.lru_cache(maxsize=None)(self.rows)  # few distinct (length, count) pairs
        for group in _in_groups(batches):
            lengths, sizes, real_src = _batch_maxima(self.src, group)  # one source length a batch
            longest_tgt, _, real_tgt = _batch_maxima(self.tgt, group)
            real += real_src + real_tgt
            padded += sum(rows(length, count) * (length + round_up(width, self.tgt_multiple))
                          for length, count, width in zip(lengths.tolist(), sizes.tolist(), longest_tgt.tolist()))
        return 1.0 - real / padded if padded else 0.0

