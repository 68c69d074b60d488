"""nmt/model/lstm_kernel.py: the Triton LSTM recurrence against nn.LSTM, and where it is used.

On the CPU the kernels run through Triton's interpreter, in a process of their own (TRITON_INTERPRET
must be set before Triton is imported), with a small reduction chunk so that the split reduction
(several programs per block, the last adding their sums) runs at these small sizes; on CUDA the
compiled kernels at their own tile sizes, in bf16 and as a CUDA graph.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nmt.model import lstm_kernel
from nmt.model.lm import LanguageModel
from nmt.model.rnn import StackedRNN

ROOT = Path(__file__).resolve().parents[1]
cuda = pytest.mark.skipif(not torch.cuda.is_available() or lstm_kernel.triton is None, reason="needs CUDA and Triton")


def grads_of(fn, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """fn() -> (outputs...); the gradients of a fixed random projection of them wrt `inputs`."""
    outputs = fn()
    g = torch.Generator().manual_seed(7)
    loss = sum((o.float() * torch.randn(o.shape, generator=g).to(o.device)).sum() for o in outputs)
    return [o.detach().float() for o in outputs] + list(torch.autograd.grad(loss, inputs))


def check_recurrence(device: str, atol: float) -> None:
    """recurrence(x W_ih^T + b, W_hh, h0, c0) equals one nn.LSTM layer: outputs, final state, and
    every gradient; with rows past one block of rows, a hidden size not a multiple of the tiles,
    the final state's gradient alone, and no gradient at all."""
    for rows, steps, size_in, hidden in ((3, 4, 5, 20), (35, 3, 7, 33), (1, 1, 4, 17)):
        torch.manual_seed(rows)
        lstm = nn.LSTM(size_in, hidden, 1, batch_first=True).to(device)
        x = torch.randn(rows, steps, size_in, device=device, requires_grad=True)
        h0 = torch.randn(1, rows, hidden, device=device, requires_grad=True)
        c0 = torch.randn(1, rows, hidden, device=device, requires_grad=True)
        weights = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0]

        def reference(final_only=False):
            out, (h, c) = lstm(x, (h0, c0))
            return (h[0], c[0]) if final_only else (out, h[0], c[0])

        def ours(final_only=False):
            pre = nn.functional.linear(x, lstm.weight_ih_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0)
            out, h, c = lstm_kernel.recurrence(pre, lstm.weight_hh_l0, h0[0], c0[0])
            assert out.shape == (rows, steps, hidden) and h.shape == c.shape == (rows, hidden)
            return (h, c) if final_only else (out, h, c)

        for final_only in (False, True):
            want = grads_of(lambda: reference(final_only), [x, h0, c0] + weights)
            got = grads_of(lambda: ours(final_only), [x, h0, c0] + weights)
            for i, (a, b) in enumerate(zip(want, got)):
                torch.testing.assert_close(b, a, atol=atol, rtol=1e-4,
                                           msg=lambda m: f"{rows}x{steps}x{hidden} final_only={final_only} #{i}: {m}")
        with torch.no_grad():
            torch.testing.assert_close(ours()[0], reference()[0], atol=atol, rtol=1e-4)


def check_stack(device: str, atol: float) -> None:
    """StackedRNN and LanguageModel with the kernels equal their cuDNN selves, regularisers
    included (the same seed draws the same masks: variational masks, weight drop; plain dropout
    between layers draws its mask in the memory order of the layer's output, which is not the
    same tensor layout in nn.LSTM, so it is left out here)."""
    for options in ({}, {"residual": True}, {"variational": True, "dropout": 0.3},
                    {"weight_drop": 0.5, "variational": True, "dropout": 0.2},
                    {"weight_drop": 0.5, "top": 7}):  # a smaller last layer (AWD-LSTM's), its state padded
        results = []
        for kernel in ("cudnn", "triton"):
            torch.manual_seed(0)
            model = StackedRNN(cell="lstm", input_size=6, hidden=10, layers=3, kernel=kernel, **options).to(device)
            model.train()  # cuDNN runs no backward in eval mode; without dropout, training mode draws nothing
            x = torch.randn(4, 5, 6, device=device, requires_grad=True)
            state = (torch.randn(3, 4, 10, device=device), torch.randn(3, 4, 10, device=device))
            assert model.uses_kernel(x) == (kernel == "triton")
            results.append(grads_of(lambda: (lambda o, s: (o, *s))(*model(x, state=state)),
                                    [x] + list(model.parameters())))
        for a, b in zip(*results):
            torch.testing.assert_close(b, a, atol=atol, rtol=1e-4, msg=lambda m: f"{options}: {m}")
    losses = []
    for kernel in ("cudnn", "triton"):
        torch.manual_seed(1)
        model = LanguageModel(vocab_size=30, embed=8, hidden=12, layers=2, dropout=0.3, embed_dropout=0.1,
                              word_dropout=0.1, variational_dropout=True, weight_drop=0.5, tie_embeddings=True,
                              ar_alpha=2.0, tar_beta=1.0, lstm_kernel=kernel).to(device).train()
        tokens = torch.randint(3, 30, (3, 6), device=device)
        batch = SimpleNamespace(tokens_in=tokens, tokens_out=tokens.roll(-1, 1), first=torch.tensor(0.0, device=device))
        losses.append(grads_of(lambda: (model(batch), model(batch)), list(model.parameters())))  # the carried state too
    for a, b in zip(*losses):
        torch.testing.assert_close(b, a, atol=atol, rtol=1e-4)


def check(device: str, atol: float = 1e-5) -> None:
    check_recurrence(device, atol)
    check_stack(device, atol)


def test_the_kernels_equal_nn_lstm_under_tritons_interpreter():
    pytest.importorskip("triton")
    code = ("import sys; from nmt.model import lstm_kernel as k; k.ON = ('cuda', 'cpu'); k.BLOCK_K = 16; "
            "k.BLOCK_ROWS = 16; sys.path.insert(0, 'tests'); import test_lstm_kernel as t; "
            "assert k._split(33, k.FORWARD_SPLIT)[0] > 1 and k._split(4 * 33, k.BACKWARD_SPLIT)[0] > 1; "
            "t.check('cpu')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TRITON_INTERPRET": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


def test_on_a_cpu_the_stack_is_cudnns(monkeypatch):
    """Without the kernels (a CPU, no Triton) `forward` is nn.LSTM's, whatever the setting."""
    model = StackedRNN(cell="lstm", input_size=6, hidden=10, layers=2, kernel="triton")
    x = torch.randn(2, 3, 6)
    assert not model.uses_kernel(x)  # ON is ("cuda",)
    monkeypatch.setattr(lstm_kernel, "ON", ("cuda", "cpu"))
    monkeypatch.setattr(lstm_kernel, "triton", None)
    assert not model.uses_kernel(x)
    monkeypatch.setattr(lstm_kernel, "triton", object())
    assert model.uses_kernel(x)
    assert not model.uses_kernel(x, lengths=torch.tensor([3, 2]))  # packed rows stay cuDNN's
    auto = StackedRNN(cell="lstm", input_size=6, hidden=10, layers=2, kernel="auto")
    assert auto.uses_kernel(x)
    with torch.no_grad():  # scoring: cuDNN's one call per window, unless the kernels are forced
        assert not auto.uses_kernel(x) and model.uses_kernel(x)
    assert not StackedRNN(cell="gru", input_size=6, hidden=10, layers=2, kernel="triton").uses_kernel(x)
    assert not StackedRNN(cell="lstm", input_size=6, hidden=10, layers=2, kernel="cudnn").uses_kernel(x)
    assert not StackedRNN(cell="lstm", input_size=6, hidden=10, layers=2, bidirectional=True,
                          kernel="triton").uses_kernel(x)


def test_an_eager_training_run_keeps_cudnn(tmp_path):
    """model.lstm_kernel: auto takes the kernels only in a step that is a CUDA graph."""
    from nmt.config import config_from_dict
    from nmt.tasks import prepare_data
    from nmt.train.loop import Trainer
    from tests.test_lm import lm_config_dict, write_lm_corpus

    write_lm_corpus(tmp_path / "text")
    prepare_data(config_from_dict(lm_config_dict(tmp_path)))
    for kernel, kept in (("auto", "cudnn"), ("cudnn", "cudnn")):
        trainer = Trainer(config_from_dict(lm_config_dict(tmp_path, model={"lstm_kernel": kernel})))
        assert trainer.captured is None and trainer.model.rnn.kernel == kept


@cuda
def test_the_kernels_equal_nn_lstm_on_cuda():
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        check("cuda", atol=1e-4)  # a weight gradient sums over rows and steps, in another order on the GPU
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


@cuda
def test_the_kernels_in_bf16_and_as_a_cuda_graph():
    """Under bf16 autocast the kernels stay within bf16's resolution of float32 (cuDNN's LSTM
    runs in float16 under autocast, 8x finer, so it is no bound); a captured forward and backward
    replays to the eager results (the split sums are added in a fixed order)."""
    from scripts.benchmark_train import captured

    torch.manual_seed(0)
    cudnn = StackedRNN(cell="lstm", input_size=300, hidden=300, layers=2, kernel="cudnn").cuda()
    ours = StackedRNN(cell="lstm", input_size=300, hidden=300, layers=2, kernel="triton").cuda()
    ours.load_state_dict(cudnn.state_dict())
    x = torch.randn(20, 35, 300, device="cuda", requires_grad=True)

    def run(model, bf16):
        # autograd.grad, not backward: nothing is accumulated into .grad during the capture
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out, (h, c) = model(x)
        loss = out.float().sin().sum() + c.float().sum()
        # detached: a result that kept the autograd graph alive would keep its accumulation nodes,
        # made on the default stream, into the capture (cudaErrorStreamCaptureImplicit)
        return [out.float().detach(), *torch.autograd.grad(loss, [x, *model.parameters()])]

    exact = run(cudnn, False)
    for got, want in zip(run(ours, True), exact):
        assert (got - want).abs().max() <= 2 ** -7 * want.abs().max()
    eager = run(ours, True)
    static = [torch.empty_like(t) for t in eager]

    def into_static():
        for target, value in zip(static, run(ours, True)):
            target.copy_(value)
    replay = captured(into_static)
    for _ in range(2):
        replay()
    torch.cuda.synchronize()
    assert all(torch.equal(a, b) for a, b in zip(eager, static))
