"""The Sutskever model: what the encoder sees, how padding is handled, and its two decoders."""

from __future__ import annotations

import torch

from nmt.config import load_config
from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.model import Seq2Seq, build_model
from nmt.model.seq2seq import reverse_padded
from nmt.train.setup import _NoNormalInit
from tests.conftest import pair_batch


def small_model(reverse_source=True) -> Seq2Seq:
    return Seq2Seq(src_vocab_size=20, tgt_vocab_size=15, embed=6, hidden=10, layers=3, reverse_source=reverse_source)


def test_reverse_padded_keeps_padding_at_the_end():
    tokens = torch.tensor([[4, 5, 6, PAD], [7, 8, PAD, PAD], [9, 10, 11, 12]])
    reversed_ = reverse_padded(tokens, torch.tensor([3, 2, 4]))
    assert reversed_.tolist() == [[6, 5, 4, PAD], [8, 7, PAD, PAD], [12, 11, 10, 9]]


def encoder_inputs(model, src, lens):
    seen = []
    hook = model.src_embed.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    model.encode(src, lens)
    hook.remove()
    return seen[0]


def test_the_encoder_receives_the_source_reversed():
    src, lens = torch.tensor([[4, 5, 6, PAD], [7, 8, PAD, PAD]]), torch.tensor([3, 2])
    assert encoder_inputs(small_model(True), src, lens).tolist() == [[6, 5, 4, PAD], [8, 7, PAD, PAD]]
    assert encoder_inputs(small_model(False), src, lens).tolist() == src.tolist()


def test_padding_never_reaches_the_encoder_state():
    """A sentence's final (h, c) is the same alone and beside a longer, padded-against sentence."""
    model = small_model()
    short, long = [4, 5, 6], [7, 8, 9, 10, 11, 12, 13]
    batch = torch.full((2, 7), PAD)
    batch[0, :3], batch[1] = torch.tensor(short), torch.tensor(long)
    together = model.encode(batch, torch.tensor([3, 7]))
    alone = model.encode(torch.tensor([short]), torch.tensor([3]))
    torch.testing.assert_close(together.h[:, 0], alone.h[:, 0])
    torch.testing.assert_close(together.c[:, 0], alone.c[:, 0])
    # ... and the padded batch really differs from feeding the padding in.
    unpacked = model.encoder(model.src_embed(reverse_padded(batch, torch.tensor([7, 7]))))[1][0]
    assert not torch.allclose(unpacked[:, 0], alone.h[:, 0])


def test_every_parameter_starts_uniform_in_the_init_range():
    model = small_model()
    for name, p in model.named_parameters():
        assert float(p.detach().abs().max()) <= 0.08, name
    assert float(model.src_embed.weight.detach()[PAD].abs().max()) == 0


def test_teacher_forced_loss_equals_the_sum_of_decode_steps():
    torch.manual_seed(1)
    model = small_model().eval()
    src, lens = torch.tensor([[4, 5, 6], [7, 8, PAD]]), torch.tensor([3, 2])
    tgt_in = torch.tensor([[BOS, 4, 9, 10], [BOS, 5, PAD, PAD]])
    tgt_out = torch.tensor([[4, 9, 10, EOS], [5, EOS, PAD, PAD]])
    loss = model(pair_batch(src, lens, tgt_in, tgt_out))
    state, total = model.encode(src, lens), torch.zeros(())
    for t in range(4):
        log_probs, state = model.decode_step(tgt_in[:, t], state)
        mask = tgt_out[:, t] != PAD
        total -= log_probs.gather(1, tgt_out[:, t:t + 1]).squeeze(1)[mask].sum()
    torch.testing.assert_close(loss, total)


def test_the_fit_check_counts_the_model_without_giving_it_values():
    """check_model_fits builds the model on the meta device with normal_ left out (its first call
    there imports ~800 modules): the count is the real model's, and normal_ works again after."""
    config = load_config("quickstart", [])
    with torch.device("meta"), _NoNormalInit():
        counted = sum(p.numel() for p in build_model(config, 300, 200).parameters())
    assert counted == sum(p.numel() for p in build_model(config, 300, 200).parameters())
    torch.manual_seed(0)
    assert torch.empty(1000).normal_().std() > 0.5
