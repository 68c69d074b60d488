"""The pruned pick of nmt/decode/topk.py: torch.topk's values and torch.argmax's positions, ties,
-inf and short last windows included; and a search that prunes finds what one that does not finds.

The pruned forms run on CUDA only; here they are called directly, or switched on for the CPU."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.decode import beam, topk
from nmt.decode.search import beam_search, greedy_search
from tests.test_search import random_batch, random_model


def unpruned(log_probs, scores, width):
    """best_extensions as it runs unpruned (the CPU's path)."""
    return beam.best_extensions(log_probs, scores)


def check_extensions(log_probs, scores, width, window=0, ranking=None):
    best, rows, tokens = topk.pruned_extensions(log_probs, scores, width, ranking, window)
    n, k, vocab = log_probs.shape
    assert best.shape == rows.shape == tokens.shape == (n, width)
    assert torch.equal(best, unpruned(log_probs, scores, width)[0])  # the same scores, best first
    # each returned extension is what it says: its row's score plus its token's log-probability
    assert torch.equal(scores.gather(1, rows) + log_probs[torch.arange(n).unsqueeze(1), rows, tokens], best)
    for group in range(n):
        live = best[group] > -math.inf
        pairs = list(zip(rows[group][live].tolist(), tokens[group][live].tolist()))
        assert len(set(pairs)) == len(pairs)  # no extension twice


def random_step(seed, n, k, vocab, dtype=torch.float32, levels=0):
    """(log_probs (n, K, V), scores (n, K)) as a search step has them; `levels` > 0: few distinct values."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, levels, (n, k, vocab), generator=g).float() if levels else \
        torch.randn(n, k, vocab, generator=g) * 3
    scores = -torch.rand(n, k, generator=g) * 5
    return torch.log_softmax(logits.to(dtype).float(), -1), scores


@pytest.mark.parametrize("vocab,window", [(600, 0), (600, 32), (601, 0), (97, 8), (4000, 0)])
@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_pruned_extensions_have_the_unpruned_scores(vocab, window, k):
    log_probs, scores = random_step(vocab + k, 6, k, vocab)
    check_extensions(log_probs, scores, min(2 * k, k * vocab), window)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_pruned_extensions_with_many_equal_scores(k):
    """Few distinct values: the last place is shared by many extensions in many windows."""
    log_probs, scores = random_step(k, 5, k, 500, levels=3)
    check_extensions(log_probs, scores.round(), 2 * k, window=10)
    check_extensions(torch.zeros(2, k, 300), torch.zeros(2, k), 2 * k, window=16)  # every value equal


def test_pruned_extensions_at_the_start_and_with_forbidden_tokens():
    log_probs, scores = random_step(3, 4, 5, 640)
    scores[:, 1:] = -math.inf  # the first step: one live hypothesis per group
    log_probs[0, 0, 3:] = -math.inf  # fewer allowed extensions than 2K in group 0
    log_probs[1, :, ::2] = -math.inf
    scores[3] = -math.inf  # a done group
    check_extensions(log_probs, scores, 10, window=32)
    best, rows, tokens = topk.pruned_extensions(log_probs, scores, 10, window=32)
    assert sorted(tokens[0, :3].tolist()) == [0, 1, 2] and (rows[0, :3] == 0).all()


def test_pruned_extensions_rank_in_the_ranking_when_given():
    """bf16 logits rank each row's tokens as its log-probabilities do (beam.ranking_of): the same pick."""
    g = torch.Generator().manual_seed(5)
    logits = (torch.randn(4, 5, 3000, generator=g) * 3).to(torch.bfloat16)
    log_probs, scores = torch.log_softmax(logits.float(), -1), -torch.rand(4, 5, generator=g)
    check_extensions(log_probs, scores, 10, ranking=logits)
    assert all(torch.equal(a, b) for a, b in zip(topk.pruned_extensions(log_probs, scores, 10, logits),
                                                 topk.pruned_extensions(log_probs, scores, 10)))


def test_too_few_windows_rank_every_extension():
    log_probs, scores = random_step(4, 3, 2, 50)
    best, rows, tokens = topk.pruned_extensions(log_probs, scores, 4, window=32)  # 2 rows x 2 windows
    assert torch.equal(best, unpruned(log_probs, scores, 4)[0])


@pytest.mark.parametrize("vocab,window", [(640, 32), (641, 32), (1000, 7), (33, 32)])
def test_pruned_argmax_is_argmax_first_of_equals(vocab, window):
    g = torch.Generator().manual_seed(vocab)
    for x in (torch.randn(9, vocab, generator=g), torch.randint(0, 3, (9, vocab), generator=g).float(),
              torch.full((2, vocab), -math.inf), torch.randn(5, vocab, generator=g).to(torch.bfloat16)):
        assert torch.equal(topk.pruned_argmax(x, window), x.argmax(-1, keepdim=True))


def test_window_divides_the_vocabulary_when_it_can():
    assert topk.window_for(6000) == 40 and topk.window_for(32000) == 40 and topk.window_for(4002) == 46
    assert topk.window_for(7919) == 40  # a prime: a short last window
    assert all(32 <= topk.window_for(v) <= 50 for v in range(100, 40000, 37))


def test_the_cpu_keeps_torch_operators(monkeypatch):
    calls = []
    monkeypatch.setattr(beam, "pruned_extensions", lambda *a, **k: calls.append("extensions"))
    monkeypatch.setattr(topk, "pruned_argmax", lambda *a, **k: calls.append("argmax"))
    log_probs, scores = random_step(0, 2, 3, 8000)
    beam.best_extensions(log_probs, scores), topk.row_argmax(log_probs[:, 0])
    assert calls == []
    monkeypatch.setattr(topk, "PRUNED_ON", ("cuda", "cpu"))
    beam.best_extensions(log_probs, scores), topk.row_argmax(log_probs[:, 0])
    assert calls == ["extensions", "argmax"]
    calls.clear()
    small, scores = random_step(0, 2, 3, 1000)
    beam.best_extensions(small, scores), topk.row_argmax(torch.randn(4, 60000))  # too few tokens; too many
    assert calls == []


@pytest.mark.parametrize("size", [1, 2, 5])
@pytest.mark.parametrize("options", [{}, dict(attention="general", input_feeding=True)])
def test_a_pruning_search_finds_the_same_hypotheses(monkeypatch, size, options):
    vocab = 1500
    model = random_model(size, vocab=vocab, **options)
    src, lens = random_batch(size + 30, vocab=vocab, size=10)
    limits = dict(max_len_a=1.5, max_len_b=4, length_penalty=0.6)

    def searched():
        if size == 1:
            return [[h] for h in greedy_search(model, src, lens, **limits)]
        return beam_search(model, src, lens, beam=size, n_best=size, **limits)

    plain = searched()
    monkeypatch.setattr(topk, "PRUNED_ON", ("cuda", "cpu"))
    monkeypatch.setattr(topk, "MIN_VOCAB", 1)
    monkeypatch.setattr(topk, "ARGMAX_VOCAB", (1, 10 ** 9))
    calls = []
    for owner, name in ((beam, "pruned_extensions"), (topk, "pruned_argmax")):
        function = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, function=function, **k: calls.append(1) or function(*a, **k))
    pruned = searched()
    assert calls  # the search did prune
    assert [[h.tokens for h in s] for s in pruned] == [[h.tokens for h in s] for s in plain]
    assert [[h.log_prob for h in s] for s in pruned] == [[h.log_prob for h in s] for s in plain]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_pruned_pick_on_cuda(dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    for n, k, vocab in ((128, 5, 6000), (128, 12, 32000), (16, 4, 7919), (128, 1, 6000)):
        logits = (torch.randn(n, k, vocab, device="cuda", generator=g) * 3).to(dtype)
        for ranked in (logits, logits.round()):  # the second with many equal values
            log_probs = torch.log_softmax(ranked.float(), -1)
            scores = -torch.rand(n, k, device="cuda", generator=g)
            assert topk.prunes(log_probs)
            best, rows, tokens = beam.best_extensions(log_probs, scores, ranked)
            plain = log_probs.cpu(), scores.cpu()
            assert torch.equal(best.cpu(), beam.best_extensions(*plain)[0])
            assert torch.equal(scores.gather(1, rows) + log_probs[torch.arange(n, device="cuda").unsqueeze(1), rows,
                                                                  tokens], best)
    for vocab in (4000, 6000, 8192):
        x = torch.randn(128, vocab, device="cuda", generator=g).to(dtype)
        assert topk.prunes_argmax(x)
        assert torch.equal(topk.row_argmax(x), x.argmax(-1, keepdim=True))
        assert torch.equal(topk.row_argmax(x.round()), x.round().argmax(-1, keepdim=True))


@cuda
@pytest.mark.parametrize("size", [1, 5])
def test_a_captured_search_that_prunes_equals_the_eager_one_on_cuda(size):
    vocab = 6000
    model = random_model(size, vocab=vocab, attention="general", input_feeding=True).cuda()
    src, lens = random_batch(size + 40, vocab=vocab, size=16)
    limits = dict(max_len_a=1.5, max_len_b=4, length_penalty=0.6)
    found = [beam_search(model, src.cuda(), lens.cuda(), beam=size, n_best=size, cuda_graphs=graphs, **limits)
             for graphs in (False, True)]
    assert [[h.tokens for h in s] for s in found[0]] == [[h.tokens for h in s] for s in found[1]]
    assert [h.log_prob for s in found[0] for h in s] == pytest.approx([h.log_prob for s in found[1] for h in s])
