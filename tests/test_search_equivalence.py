"""The search of nmt/decode/search.py reproduces the old host-driven one exactly.

tests/search_reference.py is the beam and greedy search as they were before the device-side
rewrite. On seeded random models (LSTM and GRU, with and without attention and input feeding),
several beams, length penalties and n-best sizes, both must return the same hypotheses in the
same order, with log-probabilities and rank scores equal to 1e-5. (Not bit for bit: the new search
keeps finished sentences in the batch for a while and attends with one memory row per sentence,
so its matrix products have other shapes and round differently.)
"""

from __future__ import annotations

import pytest
import torch

from nmt.decode import beam as loop
from nmt.decode.search import beam_search, greedy_search
from tests import search_reference as old
from tests.test_search import random_batch, random_model

MODELS = {
    "lstm": {},
    "gru": dict(cell="gru"),
    "lstm+general+feed": dict(attention="general", input_feeding=True),
    "gru+dot": dict(cell="gru", attention="dot"),
    "lstm+additive+bi": dict(attention="additive", bidirectional=True),
}
# (beam, length_penalty, n_best, max_len_a, max_len_b)
# How often the loop looks at the device, and when done sentences leave the batch: the defaults,
# every step (done sentences leave at once, as in the old search), and never before the end.
LOOPS = {"default": (loop.CHECK_EVERY, loop.SHRINK_AT), "shrink-every-step": (1, 0.0), "never-shrink": (3, 2.0)}
SEARCHES = [(1, 0.0, 1, 1.0, 3), (2, 0.0, 2, 1.0, 2), (3, 0.6, 1, 1.5, 3), (4, 1.0, 4, 1.0, 4), (5, 0.6, 3, 0.5, 6)]


def use_loop(monkeypatch, name: str) -> None:
    check_every, shrink_at = LOOPS[name]
    monkeypatch.setattr(loop, "CHECK_EVERY", check_every)
    monkeypatch.setattr(loop, "SHRINK_AT", shrink_at)


def assert_same(new, reference):
    assert [[h.tokens for h in s] for s in new] == [[h.tokens for h in s] for s in reference]
    for mine, its in zip(new, reference):
        assert [h.log_prob for h in mine] == pytest.approx([h.log_prob for h in its], abs=1e-5)
        assert [h.rank_score for h in mine] == pytest.approx([h.rank_score for h in its], abs=1e-5)


def check_beam(seed: int, model_name: str, search) -> None:
    beam, alpha, n_best, a, b = search
    model = random_model(seed, **MODELS[model_name])
    src, lens = random_batch(seed + 10, size=12)
    limits = dict(max_len_a=a, max_len_b=b, length_penalty=alpha)
    reference = old.beam_search(model, src, lens, beam=beam, n_best=n_best, **limits)
    assert_same(beam_search(model, src, lens, beam=beam, n_best=n_best, **limits), reference)


def check_greedy(seed: int, model_name: str) -> None:
    model = random_model(seed, **MODELS[model_name])
    src, lens = random_batch(seed + 20, size=12)
    limits = dict(max_len_a=1.5, max_len_b=3, length_penalty=0.6)
    reference = [[h] for h in old.greedy_search(model, src, lens, **limits)]
    assert_same([[h] for h in greedy_search(model, src, lens, **limits)], reference)


@pytest.mark.parametrize("search", SEARCHES, ids=lambda s: "beam{}-alpha{}-nbest{}-a{}-b{}".format(*s))
@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("seed", [0, 1])
def test_beam_search_equals_the_old_beam_search(seed, model_name, search):
    check_beam(seed, model_name, search)


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_search_equals_the_old_greedy_search(seed, model_name):
    check_greedy(seed, model_name)


@pytest.mark.parametrize("loop_name", ["shrink-every-step", "never-shrink"])
@pytest.mark.parametrize("model_name", MODELS)
def test_when_done_sentences_leave_the_batch_changes_nothing(monkeypatch, loop_name, model_name):
    use_loop(monkeypatch, loop_name)
    for search in (SEARCHES[2], SEARCHES[4]):
        check_beam(2, model_name, search)
    check_greedy(2, model_name)
