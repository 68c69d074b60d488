"""The samplers' faster paths (one sort for the static groups, a kept last epoch, padding counted in
a few numpy calls) give exactly the batches and fractions of the loops they replaced, kept here."""

from __future__ import annotations

import numpy as np
import pytest

from nmt.data.batching import BucketSampler, StaticShapeSampler


def reference_static_epoch(sampler: StaticShapeSampler, epoch: int) -> list[np.ndarray]:
    rng = np.random.default_rng([sampler.seed, epoch])
    batches = []
    for length in np.unique(sampler.src_lens):
        group = rng.permutation(np.flatnonzero(sampler.src_lens == length))
        group = group[np.argsort(sampler.tgt_lens[group], kind="stable")]
        rows = sampler.rows(int(length))
        batches.extend(group[i:i + rows] for i in range(0, len(group), rows))
    return [batches[i] for i in rng.permutation(len(batches))]


def reference_bucket_padding(sampler: BucketSampler, batches) -> float:
    real = padded = 0
    for b in batches:
        for lens in (sampler.src_lens[b], sampler.tgt_lens[b]):
            real += int(lens.sum())
            padded += int(lens.max()) * len(b)
    return 1.0 - real / padded if padded else 0.0


def reference_static_padding(sampler: StaticShapeSampler, batches) -> float:
    real = padded = 0
    for b in batches:
        rows, length, width = sampler.shape(b)
        real += int(sampler.src_lens[b].sum() + sampler.tgt_lens[b].sum())
        padded += rows * (length + width)
    return 1.0 - real / padded if padded else 0.0


def lengths(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 60, size=count)
    return src, np.maximum(1, src + rng.integers(-10, 10, size=count))


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("max_tokens, row_multiple", [(None, 8), (700, 8), (900, 16)])
def test_static_batches_are_those_of_the_per_length_loop(max_tokens, row_multiple):
    src, tgt = lengths(5000, 1)
    sampler = StaticShapeSampler(src, tgt, batch_size=48, max_tokens=max_tokens, seed=3, row_multiple=row_multiple)
    for epoch in (0, 1, 0, 5):
        batches = sampler.epoch(epoch)
        assert same(batches, reference_static_epoch(sampler, epoch))
        assert sampler.padding_fraction(batches) == reference_static_padding(sampler, batches)


@pytest.mark.parametrize("max_tokens", [None, 600])
def test_bucket_padding_is_that_of_the_per_batch_loop(max_tokens):
    src, tgt = lengths(3000, 2)
    sampler = BucketSampler(src, tgt, batch_size=32, max_tokens=max_tokens, pool=10, seed=4)
    batches = sampler.epoch(2)
    assert sampler.padding_fraction(batches) == reference_bucket_padding(sampler, batches)
    assert sampler.padding_fraction([]) == reference_bucket_padding(sampler, []) == 0.0


def test_the_kept_epoch_is_the_epoch_and_a_caller_cannot_change_it():
    src, tgt = lengths(2000, 3)
    sampler, fresh = BucketSampler(src, tgt, batch_size=16, seed=9), BucketSampler(src, tgt, batch_size=16, seed=9)
    first = sampler.epoch(0)
    first.reverse()  # a caller's own list
    assert same(sampler.epoch(0), fresh.epoch(0))
    assert same(sampler.epoch(1), fresh.epoch(1)) and same(sampler.epoch(0), fresh.epoch(0))


def reference_bucket_epoch(sampler: BucketSampler, epoch: int) -> list[np.ndarray]:
    """The loop the one-sort pools replaced: each pool sorted by np.lexsort on its own."""
    rng = np.random.default_rng([sampler.seed, epoch])
    order = rng.permutation(len(sampler.src_lens))
    pool_size, batches = sampler._pool_size(), []
    for start in range(0, len(order), pool_size):
        chunk = order[start:start + pool_size]
        batches.extend(sampler._cut(chunk[np.lexsort((sampler.tgt_lens[chunk], sampler.src_lens[chunk]))]))
    return [batches[i] for i in rng.permutation(len(batches))]


@pytest.mark.parametrize("count, max_tokens, pool, batch_size, longest", [
    (5000, None, 10, 32, 60), (5000, 600, 7, 32, 60), (3001, None, 3, 17, 60),
    (300_000, None, 100, 128, 60),  # several blocks of pools
    (2000, None, 5, 16, 2**25)])  # lengths too wide for the bit fields: the per-pool sort itself
def test_bucket_batches_are_those_of_the_per_pool_loop(count, max_tokens, pool, batch_size, longest):
    rng = np.random.default_rng(5)
    src = rng.integers(1, longest, size=count)
    tgt = np.maximum(1, src + rng.integers(-10, 10, size=count))
    sampler = BucketSampler(src, tgt, batch_size=batch_size, max_tokens=max_tokens, pool=pool, seed=7)
    for epoch in (0, 3):
        batches = sampler.epoch(epoch)
        assert same(batches, reference_bucket_epoch(sampler, epoch))
        assert all(b.dtype == np.int32 for b in batches)  # half the memory of int64 indices
