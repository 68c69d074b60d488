"""The decoder state's two row selections and the ensemble's two combinations.

`select(indices)` keeps any rows (each row then has its own copy of the attention memory);
`reorder(indices, sentences)` keeps rows that stay with their sentence, so the K hypotheses of a
sentence share one memory row. Both must give the decoder exactly the same next step.
"""

from __future__ import annotations

import math

import pytest
import torch

from nmt.data.tokenizer import BOS
from nmt.model.ensemble import Ensemble
from tests.test_model_options import VARIANTS, make, toy_batch


def steps(model, state, prev, count=3):
    """log-probabilities of `count` steps fed with the same tokens, and the last state."""
    outputs = []
    for _ in range(count):
        log_probs, state = model.decode_step(prev, state)
        outputs.append(log_probs)
        prev = log_probs.argmax(-1)
    return torch.stack(outputs), state


@pytest.mark.parametrize("name", VARIANTS)
@torch.no_grad()
def test_reorder_within_sentences_equals_select(name):
    model = make(seed=5, **VARIANTS[name]).eval()
    src, lens, _, _ = toy_batch()
    k, n = 4, src.size(0)
    expand = torch.arange(n).repeat_interleave(k)  # (n*K,) each sentence's K rows
    shared, copied = model.encode(src, lens).reorder(expand), model.encode(src, lens).select(expand)
    if shared.memory is not None:  # one memory row per sentence, against one per hypothesis
        assert shared.memory.size(0) == n and copied.memory.size(0) == n * k and shared.rows_per_sentence == k
    prev = torch.randint(4, 11, (n * k,))
    out_shared, shared = steps(model, shared, prev)
    out_copied, copied = steps(model, copied, prev)
    torch.testing.assert_close(out_shared, out_copied, rtol=1e-5, atol=1e-6)
    # A beam reorder (rows permuted within their sentence), then sentence 1 leaves the batch.
    within = (torch.arange(n).repeat_interleave(k) * k + torch.randint(0, k, (n * k,)))
    shared, copied = shared.reorder(within), copied.select(within)
    keep = torch.tensor([0, 2])
    rows = (keep.unsqueeze(1) * k + torch.arange(k)).view(-1)
    shared, copied = shared.reorder(rows, keep), copied.select(rows)
    prev = torch.randint(4, 11, (rows.numel(),))
    torch.testing.assert_close(steps(model, shared, prev)[0], steps(model, copied, prev)[0], rtol=1e-5, atol=1e-6)
    # `select` on a shared state gives each row its own memory, and the same step.
    anyhow = torch.tensor([5, 0, 7, 7])
    torch.testing.assert_close(steps(model, shared.select(anyhow), prev[:4])[0],
                               steps(model, copied.select(anyhow), prev[:4])[0], rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_ensemble_modes_combine_as_documented_and_a_model_with_itself_is_the_model():
    a, b = make(seed=1, attention="dot").eval(), make(seed=2).eval()
    src, lens, tgt_in, _ = toy_batch()
    prev = tgt_in[:, 0]
    lp_a, _ = a.decode_step(prev, a.encode(src, lens))
    lp_b, _ = b.decode_step(prev, b.encode(src, lens))
    for mode in ("mean", "log_linear"):
        twice = Ensemble([a, a], mode)
        torch.testing.assert_close(twice.decode_step(prev, twice.encode(src, lens))[0], lp_a, rtol=1e-5, atol=1e-5)
    both = Ensemble([a, b], "log_linear")
    geometric = (lp_a.exp() * lp_b.exp()).sqrt()
    expected = torch.log(geometric / geometric.sum(-1, keepdim=True))
    combined = both.decode_step(prev, both.encode(src, lens))[0]
    torch.testing.assert_close(combined, expected, rtol=1e-5, atol=1e-5)
    assert math.isclose(float(combined.exp().sum(-1)[0]), 1.0, rel_tol=1e-5)
    assert Ensemble([a, b]).with_mode("log_linear").mode == "log_linear"
    with pytest.raises(ValueError, match="log_linear"):
        Ensemble([a, b], "median")
    state = both.encode(src, lens).reorder(torch.arange(3).repeat_interleave(2))
    log_probs, _ = both.decode_step(torch.full((6,), BOS), state)
    assert log_probs.shape == (6, 11)


@pytest.mark.parametrize("mode", ["mean", "log_linear"])
def test_a_model_ensembled_with_itself_searches_as_the_model(mode):
    from nmt.decode.search import beam_search, sample_search
    from nmt.decode.sampling import sampling_generator

    a = make(seed=3, attention="general", input_feeding=True).eval()
    src, lens, _, _ = toy_batch()
    limits = dict(max_len_a=1.0, max_len_b=3)
    alone = beam_search(a, src, lens, beam=3, n_best=3, **limits)
    twice = beam_search(Ensemble([a, a], mode), src, lens, beam=3, n_best=3, **limits)
    assert [[h.tokens for h in s] for s in twice] == [[h.tokens for h in s] for s in alone]
    for mine, its in zip(twice, alone):
        assert [h.log_prob for h in mine] == pytest.approx([h.log_prob for h in its], abs=1e-5)
    draws = [sample_search(model, src, lens, n_samples=3, n_best=3, temperature=1.0,
                           generator=sampling_generator(5, src.device), **limits)
             for model in (a, Ensemble([a, a], mode))]
    assert [[h.tokens for h in s] for s in draws[0]] == [[h.tokens for h in s] for s in draws[1]]
