"""The bucketing sampler and the padded batches it feeds the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nmt.data.batching import ParallelData, collate
from nmt.data.samplers import BucketSampler, StaticShapeSampler
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
    assert batch.num_tokens == sum(len(data.sentence("tgt", i)) + 1 for i in range(3))


@pytest.mark.parametrize("options", [dict(batch_size=16), dict(batch_size=5, tgt_multiple=4), dict(batch_size=1, max_tokens=300)])
def test_static_shape_batches_hold_one_source_length_and_every_example_once(options):

    src, tgt = lengths(1500)
    sampler = StaticShapeSampler(src, tgt, seed=4, **options)
    batches = sampler.epoch(1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1500))
    for batch in batches:
        rows, length, width = sampler.shape(batch)
        assert set(src[batch].tolist()) == {length} and len(batch) <= rows
        assert width % sampler.tgt_multiple == 0 and width >= int(tgt[batch].max()) + 1


def test_static_collate_fills_rows_and_keeps_the_sentences(toy_workspace):
    data = ParallelData(toy_workspace / "prepared", "train")
    same_length = [i for i in range(len(data)) if data.src_lens[i] == data.src_lens[0]][:3]
    width = int(data.tgt_lens[same_length].max()) + 3
    batch = collate(data, same_length, rows=8, tgt_width=width)
    assert batch.src.shape == (8, data.src_lens[0]) and batch.tgt_in.shape == (8, width) and batch.src_lens is None
    assert batch.num_sentences == 3 and int((batch.tgt_out != PAD).sum()) == batch.num_tokens
    assert set(batch.src[3:].flatten().tolist()) == {PAD} and set(batch.tgt_out[3:].flatten().tolist()) == {PAD}
    dynamic = collate(data, same_length)
    assert torch.equal(batch.src[:3], dynamic.src) and torch.equal(batch.tgt_in[:3, :dynamic.tgt_in.size(1)], dynamic.tgt_in)


def test_static_shapes_shrink_the_last_batch_of_a_source_length_instead_of_filling_it():

    src = np.array([5] * 140 + [7] * 9)  # 128 + 12 of length 5, 9 of length 7
    sampler = StaticShapeSampler(src, np.full(len(src), 4), batch_size=128, tgt_multiple=1)
    shapes = sorted((sampler.shape(b)[0], sampler.shape(b)[1], len(b)) for b in sampler.epoch(0))
    assert shapes == [(16, 5, 12), (16, 7, 9), (128, 5, 128)]  # 128 -> 64 -> 32 -> 16 holds 12 (and 9)
    tokens = StaticShapeSampler(src, np.full(len(src), 4), batch_size=128, max_tokens=400, tgt_multiple=1,
                                row_multiple=16)
    assert [tokens.rows(5), tokens.rows(5, 12), tokens.rows(7, 9)] == [80, 16, 16]  # 400 // 5 = 80 rows
