"""The paper's multi-GPU layout, on the CPU: the same code path with devices [cpu, cpu] gives the
plain model's loss and gradients, and the split softmax gives the full softmax's loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.model import Seq2Seq
from nmt.model.pipeline import SplitOutput, spread
from nmt.train.loop import Trainer
from tests.conftest import pair_batch, tiny_config


def batch(seed=0, rows=5, src_len=7, tgt_len=9, vocab=23):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (rows, src_len), generator=g)
    body = torch.randint(4, vocab, (rows, tgt_len - 1), generator=g)
    lengths = torch.randint(1, tgt_len, (rows,), generator=g)
    positions = torch.arange(tgt_len - 1)
    body = torch.where(positions < lengths[:, None], body, PAD)
    tgt_in = torch.cat([torch.full((rows, 1), BOS), body], 1)
    tgt_out = torch.cat([body, torch.full((rows, 1), PAD)], 1)
    tgt_out[torch.arange(rows), lengths] = EOS
    return src, tgt_in, tgt_out


def grads(model, *inputs, **kw):
    model.zero_grad()
    loss = model(pair_batch(inputs[0], None, *inputs[1:]), **kw)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("parts,chunk,cell", [(1, 3, "lstm"), (3, 2, "lstm"), (2, 100, "gru")])
def test_pipeline_on_cpu_devices_equals_the_plain_model(parts, chunk, cell):
    torch.manual_seed(0)
    options = dict(src_vocab_size=23, tgt_vocab_size=23, embed=6, hidden=10, layers=4, cell=cell,
                   per_layer=True, output_parts=parts)
    plain = Seq2Seq(**options)
    piped = Seq2Seq(**options)
    piped.load_state_dict(plain.state_dict())
    piped.place(["cpu", "cpu"], ["cpu"] * parts, chunk=chunk)
    assert piped.pipeline is not None and plain.pipeline is None
    inputs = batch()
    loss_a, grads_a = grads(plain, *inputs, label_smoothing=0.1)
    loss_b, grads_b = grads(piped, *inputs, label_smoothing=0.1)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-5)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_split_softmax_loss_equals_the_full_cross_entropy(smoothing):
    torch.manual_seed(1)
    output = SplitOutput(8, 29, parts=4)
    hidden = torch.randn(17, 8)
    targets = torch.randint(0, 29, (17,))
    targets[[2, 5]] = PAD
    full = F.cross_entropy(output(hidden), targets, ignore_index=PAD, reduction="sum", label_smoothing=smoothing)
    torch.testing.assert_close(output.loss(hidden, targets, ignore_index=PAD, label_smoothing=smoothing), full)
    assert output(hidden).shape == (17, 29) and sum(s.out_features for s in output.slices) == 29


def test_layers_spread_in_blocks_or_one_per_layer():
    assert [d.type for d in spread(["cpu"], 4)] == ["cpu"] * 4
    assert spread(["cpu", "meta"], 4) == [torch.device(d) for d in ("cpu", "cpu", "meta", "meta")]
    assert spread(["meta", "cpu", "meta", "cpu"], 4)[1] == torch.device("cpu")


def test_trainer_runs_the_pipeline_and_a_one_device_model_reads_its_checkpoint(workspace):
    from nmt.decode.translate import Translator
    from nmt.train.start import train

    config = tiny_config(workspace, train={"devices": ["cpu", "cpu"], "softmax_devices": ["cpu", "cpu"],
                                           "static_shapes": True, "pipeline_chunk": 2, "max_steps": 4})
    assert Trainer(config, stream=open("/dev/null", "w")).model.pipeline is not None
    run = train(config, stream=open("/dev/null", "w"))
    translator = Translator.load(run / "best", "cpu")
    assert len(translator.translate(["wa0 wb1", ""], translator.options(beam=2, batch_size=2))) == 2


def test_the_papers_eight_device_layout_one_layer_per_device_and_a_four_way_softmax():
    """The layout of the paper's 8 GPUs (4 layers on 4 devices, the softmax in 4 slices on 4 more),
    with CPU stand-ins for the GPUs: the same loss and gradients as the plain model."""
    torch.manual_seed(2)
    options = dict(src_vocab_size=40, tgt_vocab_size=40, embed=6, hidden=10, layers=4, per_layer=True,
                   output_parts=4)
    plain, piped = Seq2Seq(**options), Seq2Seq(**options)
    piped.load_state_dict(plain.state_dict())
    piped.place(["cpu"] * 4, ["cpu"] * 4, chunk=2)
    assert [s.out_features for s in piped.output.slices] == [10, 10, 10, 10]
    inputs = batch(seed=3, vocab=40)
    loss_a, grads_a = grads(plain, *inputs)
    loss_b, grads_b = grads(piped, *inputs)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-5)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6)
