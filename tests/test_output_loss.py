"""The chunked output layer and cross-entropy (nmt/model/output_loss.py) against torch's own
`F.cross_entropy` of the whole logits: the same loss and the same gradients, over many chunks."""

import pytest
import torch
import torch.nn.functional as F

from nmt.data.batching import ParallelBatch
from nmt.model import output_loss
from nmt.model.lm import LanguageModel
from nmt.model.seq2seq import Seq2Seq

PAD = 0


def _reference(hidden, weight, bias, targets, smoothing=0.0, excluded=None):
    logits = F.linear(hidden, weight, bias)
    if excluded is not None:
        logits = logits.index_fill(-1, excluded, float("-inf"))
    return F.cross_entropy(logits, targets, ignore_index=PAD, reduction="sum", label_smoothing=smoothing)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(output_loss, "CHUNK_LOGITS", 3 * 50)  # at 50 words, 3 rows, or the layer's width if larger


@pytest.mark.parametrize("smoothing, with_bias, excluded", [
    (0.0, True, None), (0.0, False, None), (0.1, True, None), (0.1, False, None),
    (0.0, True, [1, 2]), (0.0, False, [1, 2]),  # a language model's PAD and BOS (no smoothing with them)
])
def test_loss_and_gradients_equal_torchs_cross_entropy(small_chunks, smoothing, with_bias, excluded):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(23, 8, generator=generator, requires_grad=True)
    weight = torch.randn(50, 8, generator=generator, requires_grad=True)
    bias = torch.randn(50, generator=generator, requires_grad=True) if with_bias else None
    targets = torch.randint(3, 50, (23,), generator=generator)
    targets[[0, 7, 22]] = PAD  # ignored rows, at a chunk's start, inside, at the end
    excluded = None if excluded is None else torch.tensor(excluded)
    inputs = [hidden, weight] + ([bias] if with_bias else [])

    expected = _reference(hidden, weight, bias, targets, smoothing, excluded)
    expected_grads = torch.autograd.grad(expected * 1.7, inputs)  # a scale: the backward pass multiplies
    got = output_loss.output_cross_entropy(hidden, weight, bias, targets, ignore_index=PAD,
                                           label_smoothing=smoothing, excluded=excluded)
    got_grads = torch.autograd.grad(got * 1.7, inputs)
    torch.testing.assert_close(got, expected)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e)
    assert hidden.grad is None and weight.grad is None  # autograd.grad: nothing accumulated


def test_no_gradient_wanted_gives_the_loss_only(small_chunks):
    hidden, weight = torch.randn(10, 4), torch.randn(50, 4)
    targets = torch.randint(1, 50, (10,))
    with torch.no_grad():
        got = output_loss.output_cross_entropy(hidden, weight, None, targets, ignore_index=PAD)
    torch.testing.assert_close(got, _reference(hidden, weight, None, targets))
    assert not got.requires_grad


def test_under_no_grad_the_parameters_gradients_are_not_made(small_chunks, monkeypatch):
    """Evaluation runs the loss under no_grad with parameters that require gradients: the chunks
    must then compute the loss alone, not the gradients that no backward pass will read."""
    made, softmax = [], torch.Tensor.exp_  # exp_ turns a chunk's logits into its gradient
    monkeypatch.setattr(torch.Tensor, "exp_", lambda self: made.append("gradient") or softmax(self))
    hidden = torch.randn(10, 4, requires_grad=True)
    weight, bias = torch.randn(50, 4, requires_grad=True), torch.randn(50, requires_grad=True)
    targets = torch.randint(1, 50, (10,))
    with torch.no_grad():
        got = output_loss.output_cross_entropy(hidden, weight, bias, targets, ignore_index=PAD)
        expected = _reference(hidden, weight, bias, targets)
    torch.testing.assert_close(got, expected)
    assert made == [] and not got.requires_grad


def test_every_row_ignored_is_a_zero_loss_with_zero_gradients():
    hidden = torch.randn(4, 3, requires_grad=True)
    weight = torch.randn(7, 3, requires_grad=True)
    loss = output_loss.output_cross_entropy(hidden, weight, None, torch.zeros(4, dtype=torch.long), ignore_index=PAD)
    loss.backward()
    assert loss.item() == 0.0
    assert hidden.grad.abs().sum() == 0 and weight.grad.abs().sum() == 0


def test_tied_weights_receive_both_gradients(small_chunks):
    """A tied output layer shares its weight with the embedding: autograd adds the two gradients."""
    embed = torch.nn.Embedding(50, 8)
    tokens = torch.randint(1, 50, (12,))
    targets = torch.randint(1, 50, (12,))
    grads = []
    for loss_of in (_reference, lambda h, w, b, y: output_loss.output_cross_entropy(h, w, b, y, ignore_index=PAD)):
        embed.zero_grad()
        loss_of(torch.tanh(embed(tokens)), embed.weight, None, targets).backward()
        grads.append(embed.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0])


def test_label_smoothing_with_excluded_columns_is_refused():
    with pytest.raises(ValueError, match="do not combine"):
        output_loss.output_cross_entropy(torch.randn(2, 3), torch.randn(5, 3), None, torch.ones(2, dtype=torch.long),
                                         ignore_index=PAD, label_smoothing=0.1, excluded=torch.tensor([1]))


def test_the_chunks_are_used_on_the_cpu_in_float32_for_logits_larger_than_one_chunk(monkeypatch):
    monkeypatch.setattr(output_loss, "CHUNK_LOGITS", 100)
    weight = torch.zeros(10, 8)
    assert output_loss.applies(torch.zeros(3, 5, 8), weight)  # 15 rows x 10 words: two chunks
    assert not output_loss.applies(torch.zeros(2, 5, 8), weight)  # 100 logits: one chunk, the plain path
    assert not output_loss.applies(torch.zeros(3, 5, 8, dtype=torch.float64), weight.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not output_loss.applies(torch.zeros(3, 5, 8), weight)


def _plain_and_chunked(model, batch, monkeypatch):
    """The model's training loss and its gradients, with the chunked path and with it switched off."""
    results = []
    for on in (True, False):
        monkeypatch.setattr(output_loss, "applies", lambda hidden, weight, on=on: on)
        model.zero_grad()
        torch.manual_seed(3)  # the same dropout masks both times
        loss = model(batch)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    return results


def test_the_translation_models_loss_is_the_same_either_way(monkeypatch):
    torch.manual_seed(0)
    model = Seq2Seq(src_vocab_size=30, tgt_vocab_size=40, embed=12, hidden=12, layers=2, attention="dot",
                    dropout=0.2, tie_embeddings=True)
    src = torch.randint(4, 30, (3, 6))
    tgt = torch.randint(4, 40, (3, 5))
    tgt[2, 3:] = PAD
    batch = ParallelBatch(src, torch.tensor([6, 6, 6]), tgt, tgt, num_sentences=3, num_tokens=13, total_examples=3,
                          total_tokens=13)
    (chunked, chunked_grads), (plain, plain_grads) = _plain_and_chunked(model, batch, monkeypatch)
    torch.testing.assert_close(chunked, plain)
    assert len(chunked_grads) == len(plain_grads)
    for a, b in zip(chunked_grads, plain_grads):
        torch.testing.assert_close(a, b)


def test_the_language_models_loss_is_the_same_either_way(monkeypatch):
    torch.manual_seed(0)
    model = LanguageModel(vocab_size=30, embed=8, hidden=12, layers=2, tie_embeddings=True,
                             dropout=0.2, ar_alpha=1.0, tar_beta=1.0)
    model.train()

    class Batch:
        tokens_in = torch.randint(3, 30, (2, 7))
        tokens_out = torch.randint(3, 30, (2, 7))
        first = torch.tensor(1.0)  # a stream's first window: no carried state either time
    (chunked, chunked_grads), (plain, plain_grads) = _plain_and_chunked(model, Batch, monkeypatch)
    torch.testing.assert_close(chunked, plain)
    for a, b in zip(chunked_grads, plain_grads):
        torch.testing.assert_close(a, b)
