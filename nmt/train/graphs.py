"""Whole training steps captured as CUDA graphs, one per batch shape, then replayed.

At the paper's batch of 128 sentences an eager step is bound by the CPU launching kernels
(hundreds per step). A captured graph replays the forward, backward, clipping and optimizer
kernels with one launch. That needs:
  - static shapes: a static-shape sampler gives few batch shapes (`Batch.shape_key()`);
  - static memory: each graph owns a device copy of its batch's tensors (`Batch.tensors()`),
    refilled before every replay; gradients stay allocated (zeroed inside the graph) and the
    learning rate is a device tensor;
  - nothing in the step that waits for the host: non-finite steps are skipped through the fused
    optimizer's `found_inf`, and the loss is read only every `log_every` steps.
All graphs share one memory pool; they are replayed one at a time on one stream, and what each
returns is consumed before the next replay, so their temporaries can share memory.

A shape is captured the first time a batch of it comes up, so training starts at once instead of
after capturing every shape (about a minute for 150 shapes). Capturing then must not change what
training computes, whenever it happens:
  - the warm-up steps run the model for real but update nothing (`dry_run`: the optimizer skips
    them through `found_inf`); their dropout draws and a language model's carried state are undone
    (`cuda_random_kept`, `fork_rng` for the CPU, and `kept`), so the random stream is the one the eager loop sees;
  - capturing records kernels without running them, and reserves no random numbers: the CUDA
    generator is advanced by each replay. So the first replay, right after the capture, is the
    batch's real step, drawing the numbers the eager step would have drawn.
At most `max_graphs` shapes are captured; a batch of any other shape then runs the same update
eagerly, on the same static gradients.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Optional

import torch
from torch import nn

from nmt.data.batching import Batch
from nmt.model import lstm_kernel

log = logging.getLogger("nmt")


def why_not_capturable(model: nn.Module) -> Optional[str]:
    """Why this model's training step must stay eager, or None when it can be a graph.

    A weight-dropped LSTM (AWD-LSTM's DropConnect, rnn.StackedRNN._weight_dropped) run by cuDNN
    hands it a fresh, non-flat recurrent matrix at every call; on the H200 (torch 2.11) the replay
    of such a captured step crashed the process (a segmentation fault in CUDAGraph.replay; eager
    steps of the same model, and graphs of the same model without weight drop, train fine). Until
    that is understood, such models train eagerly, unless their LSTMs run the Triton recurrence
    (model.lstm_kernel), which takes the dropped matrix as a plain tensor.
    """
    for module in model.modules():
        if getattr(module, "weight_drop", 0) and not (getattr(module, "kernel", "cudnn") != "cudnn"
                                                       and lstm_kernel.triton is not None):
            return ("a weight-dropped LSTM run by cuDNN (model.weight_drop with model.lstm_kernel: cudnn, or "
                    "without Triton) cannot be replayed as a CUDA graph yet")
    return None


@contextlib.contextmanager
def cuda_random_kept(device: torch.device):
    """The CUDA generator's stream ends as it began: the block draws from a copy of its state,
    swapped in and out with graphsafe_set_state, which touches nothing else.

    Not torch.random.fork_rng, nor set_offset: both tell the generator its stream was reset, and
    cuDNN then makes a new dropout-state buffer at its next LSTM call with dropout and frees the
    old one, which every graph captured earlier reads: their next replay is an illegal memory
    access (seen on the H200 with a 2-layer LSTM's dropout, with fork_rng and then with
    set_offset). A capture must happen outside this block: it registers the generator's real
    state with the graph. (cuDNN's own dropout buffer advances in the block and stays advanced.)
    """
    if device.type != "cuda":
        yield
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    generator = torch.cuda.default_generators[index]
    real = generator.graphsafe_get_state()
    generator.graphsafe_set_state(generator.clone_state())
    try:
        yield
    finally:
        generator.graphsafe_set_state(real)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    batch: Batch  # the graph's own device copy of the batch it was captured with
    divisor: torch.Tensor
    loss: torch.Tensor  # output: the step's summed loss (0 when skipped)


class CapturedSteps:
    def __init__(self, step: Callable, parameters, optimizer, device: torch.device, *, max_graphs: int,
                 kept: Callable[[], ContextManager]):
        """`step(batch, divisor, dry_run=)` is one update returning the summed loss (Trainer.update);
        `kept()` is a context that restores, when it exits, what the model carries from batch to
        batch (a language model's state), which the warm-up steps move."""
        self.step, self.parameters, self.device = step, parameters, device
        self.max_graphs, self.kept = max_graphs, kept
        self.graphs: dict[tuple, _Captured] = {}
        self.pool = None
        self.capture_seconds = 0.0  # host time spent capturing, warm-ups included
        self.eager_steps = 0  # steps of shapes beyond max_graphs
        for group in optimizer.param_groups:  # a tensor, so that replays see the current rate
            group["lr"] = torch.tensor(float(group["lr"]), device=device)

    def capture(self, batch: Batch) -> _Captured:
        """Warm up on a side stream (no update happens) and capture one step for this batch's shape.
        The random state and the carried state end as they were; nothing runs on the device after
        the warm-up, so the graph's first replay is the first step it computes."""
        started = time.perf_counter()
        static = batch.to(self.device)
        divisor = torch.ones((), device=self.device)
        # The CPU's random state is kept over the capture too: the CPU tests emulate a capture by
        # running the step, and a real capture draws nothing.
        with self.kept(), torch.random.fork_rng(devices=[]):
            with cuda_random_kept(self.device):
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    for _ in range(2):  # cuDNN and cuBLAS choose and allocate outside the capture
                        self.step(static, divisor, dry_run=True)
                torch.cuda.current_stream(self.device).wait_stream(side)
            for p in self.parameters:  # gradients must exist (and stay) before capture
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                torch._foreach_zero_([p.grad for p in self.parameters])
                loss = self.step(static, divisor, dry_run=False)
        self.pool = graph.pool()
        captured = self.graphs[batch.shape_key()] = _Captured(graph, static, divisor, loss)
        self.capture_seconds += time.perf_counter() - started
        return captured

    def __call__(self, batch: Batch, divisor: float) -> torch.Tensor:
        """The step for `batch` (a pinned host batch): its shape's graph replayed, captured first if
        this is the first batch of that shape; returns the loss tensor."""
        captured = self.graphs.get(batch.shape_key())
        if captured is None:
            if len(self.graphs) >= self.max_graphs:
                return self._eager(batch, divisor)
            captured = self.capture(batch)
        for tensor, target in zip(batch.tensors().values(), captured.batch.tensors().values()):  # same fields
            target.copy_(tensor, non_blocking=True)
        captured.divisor.fill_(divisor)
        captured.graph.replay()
        return captured.loss

    def _eager(self, batch: Batch, divisor: float) -> torch.Tensor:
        """The step a graph would replay, run eagerly (a shape beyond max_graphs)."""
        if not self.eager_steps:
            log.warning(f"warning: {len(self.graphs)} batch shapes captured (train.max_graphs): batches of "
                        f"other shapes train eagerly, more slowly; raise train.max_graphs to capture them too")
            self._divisor = torch.ones((), device=self.device)  # a device tensor, as in the graphs
        self.eager_steps += 1
        self._divisor.fill_(divisor)
        torch._foreach_zero_([p.grad for p in self.parameters])
        return self.step(batch.to(self.device, non_blocking=True), self._divisor, dry_run=False)
