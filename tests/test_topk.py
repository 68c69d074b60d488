"""The pruned pick of nmt/decode/topk.py: torch.topk's values and torch.argmax's positions, ties,
-inf and short last windows included; and a search that prunes finds what one that does not finds.

The pruned forms run on CUDA only; here they are called directly, or switched on for the CPU."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.decode import topk
from nmt.decode.search import beam_search, greedy_search
from tests.test_search import random_batch, random_model


def check_topk(x: torch.Tensor, k: int, window: int = 0) -> None:
    values, indices = topk.pruned_topk(x, k, window)
    assert values.shape == indices.shape == (*x.shape[:-1], k)
    assert torch.equal(values, x.topk(k, dim=-1).values)  # the same values, best first
    assert torch.equal(x.gather(-1, indices), values)  # at the positions returned
    finite = values.reshape(-1, k) > -math.inf
    for row, keep in zip(indices.reshape(-1, k), finite):
        assert len(set(row[keep].tolist())) == int(keep.sum())  # no position twice


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("vocab,window", [(600, 0), (600, 32), (601, 0), (97, 8), (4000, 0)])
@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_pruned_topk_finds_torch_topk_values(dtype, vocab, window, k):
    g = torch.Generator().manual_seed(vocab + k)
    check_topk(torch.randn(3, 7, vocab, generator=g).to(dtype), k, window)


@pytest.mark.parametrize("k", [1, 3, 8, 20])
def test_pruned_topk_with_many_equal_values(k):
    """Few distinct values: the k-th place is shared by many positions in many windows."""
    g = torch.Generator().manual_seed(k)
    check_topk(torch.randint(0, 4, (40, 500), generator=g).float(), k, window=10)
    check_topk(torch.zeros(2, 300), k, window=16)  # every value equal


def test_pruned_topk_with_forbidden_tokens():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 640, generator=g)
    x[0] = -math.inf  # a row where nothing is allowed
    x[1, 5:] = -math.inf  # fewer allowed tokens than k
    x[2, ::2] = -math.inf
    values, indices = topk.pruned_topk(x, 8, window=32)
    assert torch.equal(values, x.topk(8).values)
    assert sorted(indices[1, :5].tolist()) == [0, 1, 2, 3, 4]
    check_topk(x[2:], 8, window=32)


def test_pruned_topk_with_fewer_windows_than_k_is_torch_topk():
    x = torch.randn(4, 50)
    values, indices = topk.pruned_topk(x, 10, window=16)  # 4 windows
    assert torch.equal(values, x.topk(10).values) and torch.equal(indices, x.topk(10).indices)


@pytest.mark.parametrize("vocab,window", [(640, 32), (641, 32), (1000, 7), (33, 32)])
def test_pruned_argmax_is_argmax_first_of_equals(vocab, window):
    g = torch.Generator().manual_seed(vocab)
    for x in (torch.randn(9, vocab, generator=g), torch.randint(0, 3, (9, vocab), generator=g).float(),
              torch.full((2, vocab), -math.inf), torch.randn(5, vocab, generator=g).to(torch.bfloat16)):
        assert torch.equal(topk.pruned_argmax(x, window), x.argmax(-1, keepdim=True))


def test_window_divides_the_vocabulary_when_it_can():
    assert topk.window_for(6000) == 30 and topk.window_for(32000) == 32 and topk.window_for(8000) == 32
    assert topk.window_for(7919) == 32  # a prime: a short last window
    assert all(16 <= topk.window_for(v) <= 64 for v in range(100, 3000, 37))


def test_the_cpu_keeps_torch_operators(monkeypatch):
    calls = []
    monkeypatch.setattr(topk, "pruned_topk", lambda *a, **k: calls.append("topk"))
    monkeypatch.setattr(topk, "pruned_argmax", lambda *a, **k: calls.append("argmax"))
    x = torch.randn(4, 8000)
    assert torch.equal(topk.row_topk(x, 4).indices, x.topk(4).indices)
    assert torch.equal(topk.row_argmax(x), x.argmax(-1, keepdim=True))
    assert calls == []
    monkeypatch.setattr(topk, "PRUNED_ON", ("cuda", "cpu"))
    topk.row_topk(x, 4), topk.row_argmax(x)
    assert calls == ["topk", "argmax"]
    calls.clear()
    topk.row_topk(x, 40), topk.row_argmax(torch.randn(4, 60000))  # V < 400 k; V beyond the argmax range
    assert calls == []


@pytest.mark.parametrize("beam", [1, 2, 5])
@pytest.mark.parametrize("options", [{}, dict(attention="general", input_feeding=True)])
def test_a_pruning_search_finds_the_same_hypotheses(monkeypatch, beam, options):
    vocab = 1500
    model = random_model(beam, vocab=vocab, **options)
    src, lens = random_batch(beam + 30, vocab=vocab, size=10)
    limits = dict(max_len_a=1.5, max_len_b=4, length_penalty=0.6)

    def searched():
        if beam == 1:
            return [[h] for h in greedy_search(model, src, lens, **limits)]
        return beam_search(model, src, lens, beam=beam, n_best=beam, **limits)

    plain = searched()
    monkeypatch.setattr(topk, "PRUNED_ON", ("cuda", "cpu"))
    monkeypatch.setattr(topk, "MIN_VOCAB_PER_K", 1)
    calls = []
    for name in ("pruned_topk", "pruned_argmax"):
        function = getattr(topk, name)
        monkeypatch.setattr(topk, name, lambda *a, function=function, **k: calls.append(1) or function(*a, **k))
    pruned = searched()
    assert calls  # the search did prune
    assert [[h.tokens for h in s] for s in pruned] == [[h.tokens for h in s] for s in plain]
    assert [[h.log_prob for h in s] for s in pruned] == [[h.log_prob for h in s] for s in plain]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_the_pruned_pick_on_cuda(dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    for rows, vocab, k in ((640, 6000, 10), (1536, 32000, 24), (128, 7919, 4)):
        x = torch.randn(rows, vocab, device="cuda", generator=g).to(dtype)
        assert topk.prunes_topk(x, k)
        values, indices = topk.row_topk(x, k)
        assert torch.equal(values, x.topk(k).values) and torch.equal(x.gather(1, indices), values)
        ties = x.round()  # few distinct values
        assert torch.equal(topk.row_topk(ties, k)[0], ties.topk(k).values)
    for vocab in (1024, 6000, 16384):
        x = torch.randn(128, vocab, device="cuda", generator=g).to(dtype)
        assert topk.prunes_argmax(x)
        assert torch.equal(topk.row_argmax(x), x.argmax(-1, keepdim=True))
        assert torch.equal(topk.row_argmax(x.round()), x.round().argmax(-1, keepdim=True))


@cuda
@pytest.mark.parametrize("beam", [1, 5])
def test_a_captured_search_that_prunes_equals_the_eager_one_on_cuda(beam):
    vocab = 6000
    model = random_model(beam, vocab=vocab, attention="general", input_feeding=True).cuda()
    src, lens = random_batch(beam + 40, vocab=vocab, size=16)
    limits = dict(max_len_a=1.5, max_len_b=4, length_penalty=0.6)
    found = [beam_search(model, src.cuda(), lens.cuda(), beam=beam, n_best=beam, cuda_graphs=graphs, **limits)
             for graphs in (False, True)]
    assert [[h.tokens for h in s] for s in found[0]] == [[h.tokens for h in s] for s in found[1]]
    assert [h.log_prob for s in found[0] for h in s] == pytest.approx([h.log_prob for s in found[1] for h in s])
