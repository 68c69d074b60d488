"""The CUDA-graph step's wiring, on the CPU, and (on a GPU) real capture against the eager loop.

On the CPU, graph capture is emulated: the captured step runs once under a dispatch mode that
records every operator with the very tensors it read and wrote, and a replay runs exactly those
operators again on those tensors, as a CUDA graph replays its kernels on its static memory.
Anything the step does outside the recording (on the host, or only at capture time) is missing
from the replays, as it would be on a GPU; a host synchronisation inside the step is an error,
as it is under real capture.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nmt.config import config_from_dict
from nmt.train import graphs
from nmt.train.loop import Trainer
from nmt.train.schedule import set_rate
from tests.conftest import tiny_config


class Recorder(TorchDispatchMode):
    """Records each operator call (function, arguments, outputs) made while it is active."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError("the captured step reads a tensor on the host (.item(), bool(), ...)")
        out = func(*args, **kwargs)
        self.calls.append((func, args, kwargs, out))
        return out


def _copy_into(recorded, fresh) -> None:
    """Write a replayed call's results into the tensors the recording saw (the static memory)."""
    if isinstance(recorded, torch.Tensor) and isinstance(fresh, torch.Tensor) and recorded is not fresh:
        recorded.copy_(fresh)
    elif isinstance(recorded, (tuple, list)):
        for r, f in zip(recorded, fresh):
            _copy_into(r, f)


class FakeGraph:
    """Stands in for a CUDA graph: replay reruns the recorded operators, nothing else."""

    def __init__(self):
        self.calls = []

    def pool(self):
        return None

    @torch.no_grad()  # kernels, below autograd: the recording holds the backward pass's operators too
    def replay(self):
        for func, args, kwargs, out in self.calls:
            _copy_into(out, func(*args, **kwargs))


def fake_cuda(monkeypatch, model):
    class Stream:
        def __init__(self, *args):
            pass

        def wait_stream(self, other):
            pass

    @contextlib.contextmanager
    def graph(g, pool=None):
        # A real capture records kernels without running them: undo what the recorded run did.
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        recorder = Recorder()
        with recorder:
            yield
        g.calls = recorder.calls
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.copy_(saved[k])

    monkeypatch.setattr(graphs.torch.cuda, "Stream", Stream)
    monkeypatch.setattr(graphs.torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(graphs.torch.cuda, "current_stream", lambda *a: Stream())
    monkeypatch.setattr(graphs.torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(graphs.torch.cuda, "graph", graph)


def test_captured_steps_drive_the_update_like_the_eager_loop(workspace, monkeypatch):
    # oneDNN's CPU LSTM prepares copies of its weights below the dispatcher, where no recording
    # sees them (a replay would reuse stale copies): both runs take torch's own LSTM instead.
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    settings = dict(static_shapes=True, tgt_multiple=4, max_steps=6, eval_every=100, save_every=100)
    eager = Trainer(tiny_config(workspace, train={**settings, "run_dir": str(workspace / "eager")}))
    eager.run_dir.mkdir()
    eager.train_steps()

    captured_run = Trainer(tiny_config(workspace, train={**settings, "run_dir": str(workspace / "graph")}))
    fake_cuda(monkeypatch, captured_run.model)
    captured_run.run_dir.mkdir()
    captured_run.captured = captured_run.captured_steps()
    captured_run.train_steps()

    assert captured_run.state.step == eager.state.step == 6
    assert len(captured_run.captured.graphs) >= 2  # several batch shapes, each replayed
    assert all(torch.is_tensor(g["lr"]) for g in captured_run.optimizer.param_groups)
    for a, b in zip(eager.model.state_dict().values(), captured_run.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


ATTENTION = {"attention": "general", "input_feeding": True, "bidirectional": True, "bridge": True}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="real CUDA graph capture needs a CUDA GPU")
@pytest.mark.parametrize("model,optimizer,bf16", [({}, "sgd", False), (ATTENTION, "adam", False),
                                                  (ATTENTION, "sgd", True)],
                         ids=["paper-sgd", "attention-adam", "attention-sgd-bf16"])
def test_real_cuda_graphs_train_like_the_eager_loop(workspace, model, optimizer, bf16):
    """On a GPU: steps captured and replayed as CUDA graphs end with the eager loop's weights.

    With bf16 autocast the captured step holds the weights' casts: a replay that used the bf16
    copies of capture time instead of the current weights would drift away from the eager loop.
    """
    trainers = {}
    for cuda_graphs in (False, True):
        config = tiny_config(workspace, model=model, train=dict(
            device="cuda", bf16=bf16, optimizer=optimizer, lr=0.7 if optimizer == "sgd" else 0.002,
            static_shapes=True, tgt_multiple=4, cuda_graphs=cuda_graphs, max_steps=10, eval_every=100,
            save_every=100, run_dir=str(workspace / f"graphs-{cuda_graphs}")))
        trainer = Trainer(config)
        trainer.run_dir.mkdir()
        trainer.train_steps()
        trainers[cuda_graphs] = trainer
    eager, captured = trainers[False], trainers[True]
    assert captured.captured is not None and len(captured.captured.graphs) >= 2
    assert captured.state.step == eager.state.step == 10
    for a, b in zip(eager.model.state_dict().values(), captured.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-3 if bf16 else 1e-4, atol=1e-3 if bf16 else 1e-5)
    if bf16:  # the updates are far larger than the tolerance, so a drift would show
        untrained = Trainer(config).model.state_dict()
        moved = max(float((a - b).abs().max()) for a, b in zip(untrained.values(), eager.model.state_dict().values()))
        assert moved > 0.05, moved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="real CUDA graph capture needs a CUDA GPU")
def test_real_cuda_graphs_draw_fresh_dropout_masks_at_every_replay(workspace):
    """Dropout inside a captured step must not replay the capture's masks."""
    config = tiny_config(workspace, model={**ATTENTION, "dropout": 0.3, "embed_dropout": 0.2}, train=dict(
        device="cuda", optimizer="adam", lr=0.002, static_shapes=True, tgt_multiple=4, cuda_graphs=True,
        max_steps=4, eval_every=100, save_every=100, run_dir=str(workspace / "dropout-graphs")))
    trainer = Trainer(config)
    trainer.run_dir.mkdir()
    trainer.train_steps()
    set_rate(trainer.optimizer, 0.0)
    batch = trainer.task.batch(trainer.sampler.epoch(0)[0])
    losses = [trainer.captured(batch, 1.0).item() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses))) and len(set(losses)) == 3, losses


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-device synchronisation needs a CUDA GPU")
@pytest.mark.parametrize("model", [{}, ATTENTION], ids=["paper", "attention"])
def test_an_eager_step_never_waits_for_the_device(workspace, model):
    """Between two reports, the eager loop queues work and never synchronises (padded, packed
    batches: lengths travel pinned and non-blocking)."""
    # The eager loop on padded, packed batches: off the fast path, which `auto` takes on CUDA.
    config = tiny_config(workspace, model=model, train=dict(device="cuda", max_steps=3, log_every=100,
                                                            eval_every=100, save_every=100, static_shapes=False,
                                                            cuda_graphs=False, run_dir=str(workspace / "no-sync")))
    trainer = Trainer(config)
    trainer.run_dir.mkdir()
    trainer.train_steps()  # warm-up: cuDNN and the allocator settle
    batches = [batch for _, batch in trainer._loader(trainer.sampler.epoch(0)[:3], 0)]  # pinned host batches
    assert all(batch.src.is_pinned() and batch.src_lens.is_pinned() for batch in batches)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call now raises
    try:
        for batch in batches:
            trainer._step_on(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_captured_language_model_steps_carry_the_state_like_the_eager_loop(tmp_path, monkeypatch):
    """A language model's windows replayed as (emulated) graphs: the carried state is written in
    place inside the step, so replays must end with the eager loop's weights."""
    from nmt.tasks import prepare_data
    from tests.test_lm import lm_config_dict, write_lm_corpus

    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    write_lm_corpus(tmp_path / "text")
    settings = dict(static_shapes=True, max_steps=8, eval_every=100, save_every=100, bptt_variable=True)
    prepare_data(config_from_dict(lm_config_dict(tmp_path)))
    eager = Trainer(config_from_dict(lm_config_dict(tmp_path, train={**settings, "run_dir": str(tmp_path / "e")})))
    eager.run_dir.mkdir()
    eager.train_steps()
    captured = Trainer(config_from_dict(lm_config_dict(tmp_path, train={**settings, "run_dir": str(tmp_path / "g")})))
    fake_cuda(monkeypatch, captured.model)
    captured.run_dir.mkdir()
    captured.captured = captured.captured_steps()
    captured.train_steps()
    assert len(captured.captured.graphs) >= 2
    for a, b in zip(eager.model.state_dict().values(), captured.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="real CUDA graph capture needs a CUDA GPU")
def test_real_cuda_graphs_train_a_language_model_like_the_eager_loop(tmp_path):
    from nmt.tasks import prepare_data
    from tests.test_lm import lm_config_dict, write_lm_corpus

    write_lm_corpus(tmp_path / "text")
    prepare_data(config_from_dict(lm_config_dict(tmp_path)))
    trainers = {}
    for cuda_graphs in (False, True):
        config = config_from_dict(lm_config_dict(tmp_path, model={"dropout": 0.0}, train=dict(
            device="cuda", bf16=False, static_shapes=True, cuda_graphs=cuda_graphs, max_steps=10, eval_every=100,
            save_every=100, run_dir=str(tmp_path / f"lm-graphs-{cuda_graphs}"))))
        trainer = Trainer(config)
        trainer.run_dir.mkdir()
        trainer.train_steps()
        trainers[cuda_graphs] = trainer
    assert trainers[True].captured is not None and len(trainers[True].captured.graphs) >= 1
    # the eager loop runs cuDNN, the graphs the Triton kernels (model.lstm_kernel: auto), whose sums
    # go in another order: 1.4e-5 apart after 10 steps on the H200
    for a, b in zip(trainers[False].model.state_dict().values(), trainers[True].model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_a_weight_dropped_language_model_is_captured_only_on_the_triton_kernels(monkeypatch):
    """Run by cuDNN its replayed graph crashed the process on the H200 (see graphs.why_not_capturable)."""
    from nmt.model import lstm_kernel
    from nmt.model.lm import LanguageModel

    plain = LanguageModel(vocab_size=20, embed=8, hidden=8, layers=2, lstm_kernel="cudnn")
    dropped = LanguageModel(vocab_size=20, embed=8, hidden=8, layers=2, weight_drop=0.5, lstm_kernel="cudnn")
    dropped_auto = LanguageModel(vocab_size=20, embed=8, hidden=8, layers=2, weight_drop=0.5)
    assert graphs.why_not_capturable(plain) is None
    assert "weight_drop" in graphs.why_not_capturable(dropped)
    monkeypatch.setattr(lstm_kernel, "triton", object())
    assert graphs.why_not_capturable(dropped_auto) is None
    monkeypatch.setattr(lstm_kernel, "triton", None)
    assert "without Triton" in graphs.why_not_capturable(dropped_auto)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kernel", ["cudnn", "auto"])
def test_a_weight_dropped_language_model_trains_with_graphs_only_on_the_triton_kernels(tmp_path, kernel):
    from nmt.model import lstm_kernel
    from nmt.tasks import prepare_data
    from tests.test_lm import lm_config_dict, write_lm_corpus

    write_lm_corpus(tmp_path / "text")
    prepare_data(config_from_dict(lm_config_dict(tmp_path)))
    config = config_from_dict(lm_config_dict(tmp_path, model={"weight_drop": 0.5, "lstm_kernel": kernel}, train=dict(
        device="cuda", static_shapes=True, cuda_graphs=True, max_steps=6, eval_every=100, save_every=100,
        run_dir=str(tmp_path / "wd"))))
    trainer = Trainer(config)
    trainer.run_dir.mkdir()
    trainer.train_steps()
    assert trainer.state.step == 6
    captured = kernel == "auto" and lstm_kernel.triton is not None
    assert (trainer.captured is not None) == captured
    if captured:
        assert len(trainer.captured.graphs) >= 1
