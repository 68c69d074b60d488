"""The bucketing sampler and the padded batches it feeds the model."""

from __future__ import annotations

import numpy as np
import pytest

from nmt.data.batching import BucketSampler, ParallelData, collate
from nmt.data.tokenizer import BOS, EOS, PAD


def lengths(n: int, seed: int = 0):
    """Source lengths 1..59 and target lengths near them, as in real parallel text."""
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 60, n)
    return src, np.maximum(1, src + rng.integers(-3, 4, n))


@pytest.mark.parametrize("options", [dict(batch_size=16), dict(batch_size=7, pool=3), dict(batch_size=1, max_tokens=200)])
def test_every_example_exactly_once_per_epoch(options):
    src, tgt = lengths(1001)
    sampler = BucketSampler(src, tgt, seed=3, **options)
    for epoch in range(3):
        seen = np.concatenate(sampler.epoch(epoch))
        assert sorted(seen.tolist()) == list(range(1001))


def test_epochs_are_deterministic_given_the_seed_and_differ_between_epochs():
    src, tgt = lengths(500)
    a, b = BucketSampler(src, tgt, batch_size=16, seed=5), BucketSampler(src, tgt, batch_size=16, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a.epoch(2), b.epoch(2)))
    assert not all(np.array_equal(x, y) for x, y in zip(a.epoch(0), a.epoch(1)))
    assert not all(np.array_equal(x, y) for x, y in zip(a.epoch(0), BucketSampler(src, tgt, batch_size=16, seed=6).epoch(0)))


def test_bucketing_cuts_padding_against_random_batches():
    src, tgt = lengths(4000)
    bucketed = BucketSampler(src, tgt, batch_size=32, pool=50, seed=1)
    random_order = np.random.default_rng(0).permutation(4000)
    unsorted = [random_order[i:i + 32] for i in range(0, 4000, 32)]
    assert bucketed.padding_fraction(bucketed.epoch(0)) < 0.1
    assert bucketed.padding_fraction(unsorted) > 0.3


def test_token_batches_stay_within_max_tokens():
    src, tgt = lengths(2000)
    sampler = BucketSampler(src, tgt, batch_size=1, max_tokens=300, seed=2)
    for batch in sampler.epoch(0):
        width = max(int(src[batch].max()), int(tgt[batch].max()) + 1)
        assert len(batch) == 1 or width * len(batch) <= 300


def test_collate_pads_and_wraps_the_target(toy_workspace):
    data = ParallelData(toy_workspace / "prepared", "train")
    batch = collate(data, [0, 1, 2])
    for row in range(3):
        src, tgt = data.sentence("src", row).tolist(), data.sentence("tgt", row).tolist()
        assert batch.src[row, :len(src)].tolist() == src and set(batch.src[row, len(src):].tolist()) <= {PAD}
        assert batch.tgt_in[row, :len(tgt) + 1].tolist() == [BOS] + tgt
        assert batch.tgt_out[row, :len(tgt) + 1].tolist() == tgt + [EOS]
        assert int(batch.src_lens[row]) == len(src)
    assert batch.num_tgt_tokens == sum(len(data.sentence("tgt", i)) + 1 for i in range(3))
