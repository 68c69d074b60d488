"""Sampling: the right distribution, only allowed tokens, the model's own scores, reproducible draws.

The frequency tests draw N = 20,000 first tokens from a decoder whose first-step distribution is
written by hand and compare the counts with the expected distribution by Pearson's chi-square
test; they fail when the p-value is below 1e-4. For a correct sampler the p-value is uniform, so a
seed that makes a correct sampler fail has a 1-in-10,000 chance per test (with the fixed seed the
tests are deterministic: a failure means the sampler changed). The power: with 5 degrees of
freedom the threshold is a chi-square of 25.75; a sampler that moves 0.02 of probability from one
token to another (0.4 -> 0.38, 0.25 -> 0.27) gives an expected chi-square of about 56 and is caught
almost always (test_the_frequency_test_catches_a_wrong_distribution); a shift of 0.01 (expected
about 18) would often go unseen at this N.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from nmt.config import DecodeOptions
from nmt.data.tokenizer import BOS, EOS
from nmt.decode.sampling import keep_top_k, keep_top_p, sampling_generator
from nmt.decode.search import greedy_search, sample_search, search
from tests.test_search import random_batch, random_model

VOCAB = 10
# The first token's distribution; then EOS is certain. Token 9 has probability 0.
FIRST = {EOS: 0.05, 4: 0.4, 5: 0.25, 6: 0.15, 7: 0.1, 8: 0.05}
DRAWS = 20_000
THRESHOLD = 1e-4


@dataclass
class StepState:
    step: torch.Tensor  # (R,) tokens produced so far

    def select(self, indices):
        return StepState(self.step.index_select(0, indices))

    def reorder(self, indices, sentences=None):
        return self.select(indices)


class FirstStepDecoder:
    """Vectorised: FIRST at the first step, EOS with certainty afterwards."""

    def encode(self, src, src_lens):
        return StepState(torch.zeros(src.size(0), dtype=torch.long))

    def decode_step(self, prev, state):
        first = torch.full((VOCAB,), -math.inf)
        for token, p in FIRST.items():
            first[token] = math.log(p)
        then = torch.full((VOCAB,), -math.inf)
        then[EOS] = 0.0
        log_probs = torch.where((state.step == 0).unsqueeze(1), first, then)
        return log_probs, StepState(state.step + 1)


def first_tokens(seed: int = 7, **options) -> tuple[torch.Tensor, list]:
    """Counts (V,) of the first token of DRAWS samples of one sentence, and the samples."""
    found = sample_search(FirstStepDecoder(), torch.tensor([[4]]), torch.tensor([1]), n_samples=DRAWS, n_best=DRAWS,
                          max_len_a=0, max_len_b=3, generator=sampling_generator(seed, torch.device("cpu")),
                          **{"temperature": 1.0, **options})[0]
    firsts = torch.tensor([h.tokens[0] if h.tokens else EOS for h in found])
    return torch.bincount(firsts, minlength=VOCAB), found


def chi_square_p_value(counts: torch.Tensor, expected_probs: torch.Tensor) -> float:
    """Pearson's test over the categories of non-zero expected probability."""
    used = expected_probs > 0
    expected = expected_probs[used].double() * counts.sum()
    statistic = ((counts[used].double() - expected) ** 2 / expected).sum()
    degrees = int(used.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(degrees / 2, dtype=torch.float64), statistic / 2))


def distribution(probs: dict) -> torch.Tensor:
    p = torch.zeros(VOCAB, dtype=torch.float64)
    for token, value in probs.items():
        p[token] = value
    return p / p.sum()


@pytest.mark.parametrize("options, expected", [
    ({}, FIRST),
    (dict(temperature=0.5), {t: p ** 2 for t, p in FIRST.items()}),  # softmax(log p / 0.5) ~ p^2
    (dict(top_k=3), {4: 0.4, 5: 0.25, 6: 0.15}),
    (dict(top_p=0.6), {4: 0.4, 5: 0.25}),  # 0.4 < 0.6, 0.4 + 0.25 reaches it
    (dict(top_p=0.7), {4: 0.4, 5: 0.25, 6: 0.15}),
    (dict(temperature=2.0, top_k=4, top_p=0.8), None),  # see below
], ids=["plain", "temperature-0.5", "top-k-3", "top-p-0.6", "top-p-0.7", "all-three"])
def test_sampling_frequencies_match_the_distribution(options, expected):
    if expected is None:  # p^(1/2) renormalised over the top 4, then the nucleus of 0.8
        tempered = distribution({t: math.sqrt(FIRST[t]) for t in (4, 5, 6, 7)})
        order = tempered.argsort(descending=True)
        before = tempered[order].cumsum(0) - tempered[order]
        expected = {int(t): float(tempered[t]) for t, b in zip(order, before) if b < 0.8 and tempered[t] > 0}
    counts, found = first_tokens(**options)
    p = distribution(expected)
    assert int(counts[p == 0].sum()) == 0, f"tokens outside the allowed set were drawn: {counts.tolist()}"
    assert chi_square_p_value(counts, p) > THRESHOLD, counts.tolist()
    # Each sample is scored by the model itself, not by the filtered distribution.
    for h in found[:50]:
        token = h.tokens[0] if h.tokens else EOS
        assert h.log_prob == pytest.approx(math.log(FIRST[token]), abs=1e-6)
        assert sum(h.token_scores) == pytest.approx(h.log_prob, abs=1e-6)


def test_the_frequency_test_catches_a_wrong_distribution():
    counts, _ = first_tokens()
    wrong = distribution({**FIRST, 4: 0.38, 5: 0.27})
    assert chi_square_p_value(counts, wrong) < THRESHOLD


def test_top_k_and_top_p_filters_keep_exactly_their_sets():
    logits = torch.log(torch.tensor([[0.1, 0.3, 0.3, 0.2, 0.1], [0.96, 0.01, 0.01, 0.01, 0.01]]))
    assert torch.isfinite(keep_top_k(logits, 2)).sum(1).tolist() == [2, 2]  # ties: still exactly k
    assert torch.isfinite(keep_top_k(logits, 0)).all() and torch.isfinite(keep_top_k(logits, 9)).all()
    nucleus = keep_top_p(logits, 0.5)
    assert torch.isfinite(nucleus).sum(1).tolist() == [2, 1]  # 0.3 + 0.3 reaches 0.5; 0.96 alone does
    assert torch.isfinite(keep_top_p(logits, 1e-9)).sum(1).tolist() == [1, 1]  # never empty
    assert torch.equal(keep_top_p(logits, 1.0), logits)


def test_a_seed_gives_the_same_samples_whatever_the_global_random_state():
    model, (src, lens) = random_model(4), random_batch(5, size=4)
    options = DecodeOptions(sample=True, temperature=1.0, top_p=0.95, n_samples=5, n_best=5, seed=11,
                            max_len_a=1.0, max_len_b=4)

    def samples(global_seed, **changes):
        torch.manual_seed(global_seed)
        found = search(model, src, lens, options.override(**changes))
        return [[(h.tokens, h.log_prob) for h in hyps] for hyps in found]

    first = samples(0)
    assert samples(123) == first
    assert samples(0, seed=12) != first
    assert len({tuple(map(tuple, (t for t, _ in hyps))) for hyps in first}) > 1  # really random


def test_temperature_zero_and_top_k_one_are_greedy():
    model, (src, lens) = random_model(6, attention="dot"), random_batch(8, size=5)
    limits = dict(max_len_a=1.0, max_len_b=4)
    greedy = greedy_search(model, src, lens, **limits)
    zero = search(model, src, lens, DecodeOptions(sample=True, temperature=0.0, n_samples=2, n_best=2, **limits))
    assert [[h.tokens for h in hyps] for hyps in zero] == [[g.tokens, g.tokens] for g in greedy]
    top1 = sample_search(model, src, lens, n_samples=3, n_best=3, temperature=1.5, top_k=1,
                         generator=sampling_generator(0, src.device), **limits)
    assert [[h.tokens for h in hyps] for hyps in top1] == [[g.tokens] * 3 for g in greedy]
    for hyps, g in zip(top1, greedy):
        assert [h.log_prob for h in hyps] == pytest.approx([g.log_prob] * 3, abs=1e-5)


@torch.no_grad()
def test_samples_end_at_eos_or_the_limit_and_carry_the_models_log_probability():
    model, (src, lens) = random_model(9, cell="gru", attention="general"), random_batch(10, size=4)
    found = sample_search(model, src, lens, n_samples=4, n_best=4, temperature=1.0, max_len_a=1.0, max_len_b=2,
                          generator=sampling_generator(3, src.device))
    for row, hyps in enumerate(found):
        assert len(hyps) == 4 and hyps == sorted(hyps, reverse=True)
        n = int(lens[row])
        for h in hyps:
            assert len(h.tokens) + 1 <= n + 2 and EOS not in h.tokens
            state, prev, total = model.encode(src[row:row + 1, :n], lens[row:row + 1]), torch.tensor([BOS]), 0.0
            for token in [*h.tokens, EOS]:
                log_probs, state = model.decode_step(prev, state)
                total, prev = total + float(log_probs[0, token]), torch.tensor([token])
            assert h.log_prob == pytest.approx(total, abs=1e-4)
