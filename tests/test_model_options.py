"""The later options (attention, input feeding, bidirectional bridge, dropout kinds, residual,
tied embeddings, GRU): each behaves as described and agrees with step-by-step decoding."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.decode.search import beam_search
from nmt.model import Seq2Seq
from nmt.model.attention import Attention
from nmt.model.ensemble import Ensemble
from nmt.model.rnn import StackedRNN
from tests.conftest import pair_batch
from tests.test_search import random_batch, reference_beam

VARIANTS = {
    "paper": {},
    "gru": dict(cell="gru"),
    "dot": dict(attention="dot"),
    "general+feed": dict(attention="general", input_feeding=True),
    "concat+feed+bi+bridge": dict(attention="concat", input_feeding=True, bidirectional=True, bridge=True),
    "additive(bahdanau)": dict(attention="additive", bidirectional=True),
    "residual+variational": dict(residual=True, variational_dropout=True, dropout=0.3, attention="dot"),
    "tied+gru+feed": dict(tie_embeddings=True, cell="gru", attention="dot", input_feeding=True),
}


def make(seed=0, **options) -> Seq2Seq:
    torch.manual_seed(seed)
    size = dict(embed=8, hidden=8, layers=2) if options.get("tie_embeddings") else dict(embed=6, hidden=8, layers=2)
    return Seq2Seq(src_vocab_size=13, tgt_vocab_size=11, init_range=0.5, **size, **options)


def toy_batch():
    src = torch.tensor([[4, 5, 6, 7], [8, 9, PAD, PAD], [10, PAD, PAD, PAD]])
    lens = torch.tensor([4, 2, 1])
    tgt_in = torch.tensor([[BOS, 4, 5, 6], [BOS, 7, PAD, PAD], [BOS, 8, 9, PAD]])
    tgt_out = torch.tensor([[4, 5, 6, EOS], [7, EOS, PAD, PAD], [8, 9, EOS, PAD]])
    return src, lens, tgt_in, tgt_out


@pytest.mark.parametrize("name", VARIANTS)
def test_teacher_forcing_equals_step_by_step_decoding(name):
    model = make(**VARIANTS[name]).eval()
    src, lens, tgt_in, tgt_out = toy_batch()
    loss = model(pair_batch(src, lens, tgt_in, tgt_out))
    state, total = model.encode(src, lens), torch.zeros(())
    for t in range(tgt_in.size(1)):
        log_probs, state = model.decode_step(tgt_in[:, t], state)
        picked = log_probs.gather(1, tgt_out[:, t:t + 1]).squeeze(1)
        total -= picked[tgt_out[:, t] != PAD].sum()
    torch.testing.assert_close(loss, total, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_trains(name):
    model = make(**VARIANTS[name]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = model(pair_batch(*toy_batch()), label_smoothing=0.1)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", ["dot", "general+feed", "additive(bahdanau)", "tied+gru+feed"])
def test_batched_beam_matches_reference_with_attention(name):
    model = make(seed=3, **VARIANTS[name]).eval()
    src, lens = random_batch(7, vocab=13, size=4)
    with torch.no_grad():
        found = beam_search(model, src, lens, beam=3, max_len_a=1.0, max_len_b=2, n_best=3)
        for row, hyps in enumerate(found):
            n = int(lens[row])
            expected = reference_beam(model, src[row, :n].tolist(), beam=3, max_len=n + 2, alpha=0.0)
            assert [h.tokens for h in hyps] == [e[1] for e in expected]


@pytest.mark.parametrize("kind", ["dot", "general", "concat", "additive"])
def test_attention_weights_sum_to_one_and_ignore_padding(kind):
    torch.manual_seed(0)
    attention = Attention(kind, 5, 5)
    memory, query = torch.randn(2, 4, 5), torch.randn(2, 3, 5)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    with torch.no_grad():
        context, weights = attention(query, attention.keys(memory), memory, mask)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
        assert float(weights[0, :, 3].abs().max()) == 0 and float(weights[1, :, 1:].abs().max()) == 0
        # What sits in the padding cannot change the context.
        poisoned = memory.clone()
        poisoned[0, 3], poisoned[1, 1:] = 1e4, -1e4
        context_poisoned, _ = attention(query, attention.keys(poisoned), poisoned, mask)
    torch.testing.assert_close(context_poisoned, context)


def test_variational_dropout_uses_one_mask_per_sequence():
    model = make(variational_dropout=True, dropout=0.5, embed_dropout=0.5).train()
    x = torch.ones(3, 7, 6)
    dropped = model._drop(x, 0.5)
    # The same units are dropped at every time step of a sequence ...
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))
    # ... but not in every sequence.
    assert not torch.equal(dropped[0], dropped[1]) or not torch.equal(dropped[1], dropped[2])
    masks = model.decoder.sample_masks(3, x)
    assert all(m.shape == (3, 1, 8) for m in masks)
    standard = make(dropout=0.5, embed_dropout=0.5).train()._drop(x, 0.5)
    assert not torch.equal(standard, standard[:, :1].expand_as(standard))


def test_residual_connections_add_the_layer_input():
    model = make(residual=True, dropout=0.0, variational_dropout=True).eval()
    rnn = model.decoder
    x = torch.randn(2, 3, 6)
    first, _ = rnn.layers[0](x)
    second, _ = rnn.layers[1](first)
    out, _ = rnn(x)
    torch.testing.assert_close(out, second + first)


def test_tied_embeddings_share_one_matrix():
    model = make(tie_embeddings=True, attention="dot")
    assert model.output.weight is model.tgt_embed.weight
    assert sum(p is model.tgt_embed.weight for p in model.parameters()) == 1
    model(pair_batch(*toy_batch())).backward()
    assert model.tgt_embed.weight.grad is not None


def test_bidirectional_bridge_gives_the_decoder_a_full_state():
    model = make(bidirectional=True, bridge=True, attention="dot").eval()
    src, lens, _, _ = toy_batch()
    state = model.encode(src, lens)
    assert state.h.shape == (2, 3, 8) and state.c.shape == (2, 3, 8) and state.memory.shape == (3, 4, 8)
    assert state.src_mask.tolist() == [[True] * 4, [True, True, False, False], [True, False, False, False]]


def test_ensemble_of_one_is_the_model_and_averages_probabilities():
    a, b = make(seed=1, attention="dot").eval(), make(seed=2).eval()
    src, lens, tgt_in, _ = toy_batch()
    prev = tgt_in[:, 0]
    lp_a, _ = a.decode_step(prev, a.encode(src, lens))
    lp_b, _ = b.decode_step(prev, b.encode(src, lens))
    one = Ensemble([a])
    torch.testing.assert_close(one.decode_step(prev, one.encode(src, lens))[0], lp_a)
    both = Ensemble([a, b])
    expected = torch.log((lp_a.exp() + lp_b.exp()) / 2)
    torch.testing.assert_close(both.decode_step(prev, both.encode(src, lens))[0], expected)
    with torch.no_grad():
        assert math.isclose(float(both.decode_step(prev, both.encode(src, lens))[0].exp().sum(-1)[0]), 1.0, rel_tol=1e-5)
    # Search through the ensemble reports the ensemble's own log-probability of what it found ...
    [hyps] = beam_search(both, src[:1], lens[:1], beam=2, max_len_a=1, max_len_b=2, n_best=2)
    with torch.no_grad():
        for hyp in hyps:
            state, prev, total = both.encode(src[:1], lens[:1]), torch.tensor([BOS]), 0.0
            for token in [*hyp.tokens, EOS]:
                log_probs, state = both.decode_step(prev, state)
                total, prev = total + float(log_probs[0, token]), torch.tensor([token])
            assert hyp.log_prob == pytest.approx(total, abs=1e-5)
    # ... and a model ensembled with itself searches exactly as the model alone.
    alone = beam_search(a, src, lens, beam=3, max_len_a=1, max_len_b=2, n_best=3)
    twice = beam_search(Ensemble([a, a]), src, lens, beam=3, max_len_a=1, max_len_b=2, n_best=3)
    assert [[h.tokens for h in s] for s in twice] == [[h.tokens for h in s] for s in alone]
    for mine, its in zip(twice, alone):
        assert [h.log_prob for h in mine] == pytest.approx([h.log_prob for h in its], abs=1e-5)


def test_tied_weights_survive_a_checkpoint_round_trip(tmp_path):
    from safetensors.torch import load_file, save_file

    from nmt.checkpoint.load import load_weights_into
    from nmt.checkpoint.store import unique_state

    model = make(seed=4, tie_embeddings=True, attention="dot")
    stored = unique_state(model)
    assert "output.weight" not in stored or "tgt_embed.weight" not in stored
    save_file({k: v.contiguous() for k, v in stored.items()}, str(tmp_path / "model.safetensors"))
    fresh = make(seed=5, tie_embeddings=True, attention="dot")
    load_weights_into(fresh, load_file(str(tmp_path / "model.safetensors")), tmp_path)
    assert fresh.output.weight is fresh.tgt_embed.weight
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


@pytest.mark.parametrize("options", [dict(cell="lstm"), dict(cell="gru"), dict(cell="lstm", residual=True),
                                     dict(cell="lstm", variational=True, dropout=0.5, residual=True),
                                     dict(cell="gru", per_layer=True)],
                         ids=["lstm", "gru", "residual", "variational+residual", "gru-per-layer"])
def test_a_step_through_the_cells_is_the_stack_on_one_position(options):
    """StackedRNN.step (cell functions, used by decoders that loop) computes what forward does."""
    torch.manual_seed(0)
    rnn = StackedRNN(input_size=5, hidden=6, layers=3, **options)
    rnn.train(options.get("variational", False))  # variational: the same fixed masks on both paths
    x, h = torch.randn(4, 3, 5), torch.randn(3, 4, 6)
    c = torch.randn(3, 4, 6) if options["cell"] == "lstm" else None
    masks = rnn.sample_masks(4, x)
    assert rnn.training == any(m is not None for m in masks)
    expected, (h_end, c_end) = rnn(x, state=(h, c), masks=masks)
    outputs, state = [], (list(h), list(c) if c is not None else None)
    for t in range(x.size(1)):
        out, state = rnn.step(x[:, t], state, masks)
        outputs.append(out)
    torch.testing.assert_close(torch.stack(outputs, 1), expected)
    torch.testing.assert_close(torch.stack(state[0]), h_end)
    if c_end is not None:
        torch.testing.assert_close(torch.stack(state[1]), c_end)
