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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from nmt.data.batching import Batch


def why_not_capturable(model: nn.Module) -> Optional[str]:
    """Why this model's training step must stay eager, or None when it can be a graph.

    A weight-dropped LSTM (AWD-LSTM's DropConnect, rnn.StackedRNN._weight_dropped) hands cuDNN a
    fresh, non-flat recurrent matrix at every call; on the H200 (torch 2.11) the replay of such a
    captured step crashed the process (a segmentation fault in CUDAGraph.replay; eager steps of the
    same model, and graphs of the same model without weight drop, train fine). Until that is
    understood, such models train eagerly.
    """
    if any(getattr(module, "weight_drop", 0) for module in model.modules()):
        return "a weight-dropped LSTM (model.weight_drop) cannot be replayed as a CUDA graph yet"
    return None


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    batch: Batch  # the graph's own device copy of the batch it was captured with
    divisor: torch.Tensor
    loss: torch.Tensor  # output: the step's summed loss (0 when skipped)


class CapturedSteps:
    def __init__(self, step: Callable, parameters, optimizer, device: torch.device):
        """`step(batch, divisor, dry_run=)` is one update returning the summed loss (Trainer.update)."""
        self.step, self.parameters, self.device = step, parameters, device
        self.graphs: dict[tuple, _Captured] = {}
        self.pool = None
        for group in optimizer.param_groups:  # a tensor, so that replays see the current rate
            group["lr"] = torch.tensor(float(group["lr"]), device=device)

    def capture(self, batch: Batch) -> None:
        """Warm up on a side stream (no update happens) and capture one step for this batch's shape."""
        static = batch.to(self.device)
        divisor = torch.ones((), device=self.device)
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
        self.graphs[batch.shape_key()] = _Captured(graph, static, divisor, loss)

    def __call__(self, batch: Batch, divisor: float) -> torch.Tensor:
        """Replay the step for `batch` (a pinned host batch); returns the loss tensor."""
        key = batch.shape_key()
        if key not in self.graphs:
            self.capture(batch)
        captured = self.graphs[key]
        for tensor, target in zip(batch.tensors().values(), captured.batch.tensors().values()):  # same fields
            target.copy_(tensor, non_blocking=True)
        captured.divisor.fill_(divisor)
        captured.graph.replay()
        return captured.loss
