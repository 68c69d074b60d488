"""The samplers' block-by-block epochs (nmt/data/samplers.py): the lazy shuffle is a permutation,
and each sampler's batches are those of a plain loop over the same shuffled order, written here
as the reference; counts, slices and padding agree with the batches themselves."""

from __future__ import annotations

import numpy as np
import pytest

from nmt.data import samplers
from nmt.data.batching import Lengths
from nmt.data.samplers import BucketSampler, Epoch, ShuffledOrder, StaticShapeSampler


def lengths(count: int, seed: int, longest: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = rng.integers(1, longest, size=count)
    return src, np.maximum(1, src + rng.integers(-10, 10, size=count))


def same(a, b) -> bool:
    a, b = list(a), list(b)
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("count", [0, 1, 2, 3, 4, 5, 17, 64, 1000, 4097, 100_003])
def test_the_shuffled_order_is_a_permutation_and_reads_the_same_in_pieces(count):
    order = ShuffledOrder(count, np.random.default_rng(4))
    whole = order[0:count]
    assert sorted(whole.tolist()) == list(range(count))
    cuts = [0, count // 3, count // 3 + 1, count]
    assert np.array_equal(np.concatenate([order[a:b] for a, b in zip(cuts[:-1], cuts[1:])]), whole)
    assert np.array_equal(ShuffledOrder(count, np.random.default_rng(4))[0:count], whole)  # the seed decides it


def test_the_shuffled_order_looks_random():
    count = 200_000
    first, other = (ShuffledOrder(count, np.random.default_rng(seed))[0:count] for seed in (1, 2))
    assert not np.array_equal(first, other)
    positions = np.arange(count)
    # For a uniformly random permutation the correlation of position and value has a standard
    # deviation of 1/sqrt(count) = 0.0022: 0.02 is 9 of them.
    assert abs(np.corrcoef(positions, first)[0, 1]) < 0.02
    assert abs(np.corrcoef(first[:-1], first[1:])[0, 1]) < 0.02  # neighbours unrelated
    # Where the first tenth of the corpus lands: in every tenth of the order, about a tenth of it.
    share = np.bincount(np.flatnonzero(first < count // 10) * 10 // count, minlength=10) / (count // 10)
    assert np.all(np.abs(share - 0.1) < 0.01)  # the binomial's sd is 0.0021


def reference_bucket_epoch(sampler: BucketSampler, epoch: int) -> list[np.ndarray]:
    """The same shuffled order, each pool sorted by np.lexsort on its own, the batches of each
    block of pools shuffled together."""
    rng = np.random.default_rng([sampler.seed, epoch])
    order = ShuffledOrder(len(sampler), rng)[0:len(sampler)]
    pool_size = sampler.pool_size
    block = pool_size * max(1, samplers.BUCKET_BLOCK // pool_size)
    out = []
    for start in range(0, len(order), block):
        batches = []
        for p in range(start, min(start + block, len(order)), pool_size):
            pool = order[p:p + pool_size]
            pool = pool[np.lexsort((sampler.tgt(pool), sampler.src(pool)))]
            batches.extend(sampler._cut(pool, sampler.src(pool), sampler.tgt(pool)))
        out.extend(batches[i] for i in rng.permutation(len(batches)))
    return out


@pytest.mark.parametrize("count, max_tokens, pool, batch_size, longest", [
    (5000, None, 10, 32, 60), (5000, 600, 7, 32, 60), (3001, None, 3, 17, 60),
    (300_000, None, 100, 128, 60),  # several blocks of pools
    (2000, None, 5, 16, 2**25)])  # lengths too wide for the bit fields: the per-pool sort itself
def test_bucket_batches_are_those_of_the_per_pool_loop(count, max_tokens, pool, batch_size, longest):
    src, tgt = lengths(count, 5, longest)
    sampler = BucketSampler(src, tgt, batch_size=batch_size, max_tokens=max_tokens, pool=pool, seed=7)
    for epoch in (0, 3):
        batches = sampler.epoch(epoch)
        assert same(batches, reference_bucket_epoch(sampler, epoch))
        assert len(batches) == len(list(batches))  # counted without building the batches
        assert all(b.dtype == np.int32 for b in batches)  # half the memory of int64 indices


def reference_static_epoch(sampler: StaticShapeSampler, epoch: int, block: int) -> list[np.ndarray]:
    """The same shuffled order, a block at a time: per source length, what was left over from the
    blocks before, then this block's sentences, sorted by target length and cut into full batches;
    the rest waits, and after the last block makes each length's last batch."""
    rng = np.random.default_rng([sampler.seed, epoch])
    order = ShuffledOrder(len(sampler), rng)[0:len(sampler)]
    waiting, out = {}, []
    for start in range(0, len(order), block):
        ids = order[start:start + block]
        batches = []
        for length in np.unique(sampler.src(ids)).tolist():
            group = np.concatenate([waiting.pop(length, ids[:0]), ids[sampler.src(ids) == length]])
            group = group[np.argsort(sampler.tgt(group), kind="stable")]
            rows = sampler.rows(length)
            full = len(group) // rows * rows
            batches.extend(group[i:i + rows] for i in range(0, full, rows))
            if full < len(group):
                waiting[length] = group[full:]
        if start + block >= len(order):
            batches.extend(waiting.values())
        out.extend(batches[i] for i in rng.permutation(len(batches)))
    return out


@pytest.mark.parametrize("max_tokens, row_multiple, block", [(None, 8, 2**20), (700, 8, 2**20), (900, 16, 2**20),
                                                             (None, 8, 1024)])  # several blocks
def test_static_batches_are_those_of_the_per_length_loop(monkeypatch, max_tokens, row_multiple, block):
    monkeypatch.setattr(samplers, "STATIC_BLOCK", block)
    src, tgt = lengths(5000, 1)
    sampler = StaticShapeSampler(src, tgt, batch_size=48, max_tokens=max_tokens, seed=3, row_multiple=row_multiple)
    for epoch in (0, 1, 0, 5):
        batches = sampler.epoch(epoch)
        assert same(batches, reference_static_epoch(sampler, epoch, block))
        assert len(batches) == len(list(batches))
        # at most one batch short of its rows per source length, whatever the number of blocks
        short = [int(src[b[0]]) for b in batches if len(b) < sampler.rows(int(src[b[0]]))]
        assert len(short) == len(set(short))


def reference_padding(sampler, batches) -> float:
    real = padded = 0
    for b in batches:
        if isinstance(sampler, StaticShapeSampler):
            rows, length, width = sampler.shape(b)
            real += int(sampler.src(b).sum() + sampler.tgt(b).sum())
            padded += rows * (length + width)
        else:
            for lens in (sampler.src(b), sampler.tgt(b)):
                real += int(lens.sum())
                padded += int(lens.max()) * len(b)
    return 1.0 - real / padded if padded else 0.0


@pytest.mark.parametrize("make", [lambda s, t: BucketSampler(s, t, batch_size=32, pool=10, seed=4),
                                  lambda s, t: BucketSampler(s, t, batch_size=32, max_tokens=600, pool=10, seed=4),
                                  lambda s, t: StaticShapeSampler(s, t, batch_size=32, seed=4)])
def test_padding_is_that_of_the_per_batch_loop(make):
    src, tgt = lengths(9000, 2)  # more batches than padding_fraction takes at a time
    sampler = make(src, tgt)
    batches = sampler.epoch(2)
    assert sampler.padding_fraction(batches) == pytest.approx(reference_padding(sampler, batches), abs=1e-12)
    assert sampler.padding_fraction([]) == 0.0


def test_an_epoch_read_from_a_batch_on_is_the_rest_of_it():
    src, tgt = lengths(3000, 3)
    epoch = BucketSampler(src, tgt, batch_size=16, pool=4, seed=9).epoch(1)
    whole = list(epoch)
    assert same(epoch[40:], whole[40:]) and len(epoch[40:]) == len(whole) - 40
    assert same(epoch[40:][10:], whole[50:])
    assert same(epoch[:3], whole[:3]) and np.array_equal(epoch[7], whole[7])
    assert same(epoch, whole)  # reading it again builds the same batches
    with pytest.raises(IndexError):
        epoch[len(whole)]


def test_the_samplers_read_lengths_from_the_offsets(tmp_path):
    """A prepared split's Lengths (memory-mapped offsets) give the batches numpy arrays give."""
    src, tgt = lengths(4000, 6)
    for name, values in (("src", src), ("tgt", tgt)):
        np.save(tmp_path / f"{name}.npy", np.concatenate([[0], np.cumsum(values)]).astype(np.int64))
    mapped = [Lengths(np.load(tmp_path / f"{name}.npy", mmap_mode="r")) for name in ("src", "tgt")]
    assert np.array_equal(mapped[0][:], src) and np.array_equal(mapped[1][[5, 0, 3]], tgt[[5, 0, 3]])
    for make in (lambda s, t: BucketSampler(s, t, batch_size=16, max_tokens=500, seed=2),
                 lambda s, t: StaticShapeSampler(s, t, batch_size=16, seed=2)):
        assert same(make(*mapped).epoch(0), make(src, tgt).epoch(0))


def test_the_kept_epoch_is_the_epoch():
    src, tgt = lengths(2000, 3)
    sampler, fresh = BucketSampler(src, tgt, batch_size=16, seed=9), BucketSampler(src, tgt, batch_size=16, seed=9)
    assert sampler.epoch(0) is sampler.epoch(0) and isinstance(sampler.epoch(0), Epoch)
    assert same(sampler.epoch(0), fresh.epoch(0))
    assert same(sampler.epoch(1), fresh.epoch(1)) and same(sampler.epoch(0), fresh.epoch(0))
