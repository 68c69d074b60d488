"""Whole training steps captured as CUDA graphs, one per batch shape, then replayed.

At the paper's batch of 128 sentences an eager step is bound by the CPU launching kernels
(hundreds per step). A captured graph replays the forward, backward, clipping and optimizer
kernels with one launch. That needs:
  - static shapes: `StaticShapeSampler` gives few (rows, source length, target width) shapes;
  - static memory: inputs are copied into tensors owned by the graph; gradients stay allocated
    (zeroed inside the graph) and the learning rate is a device tensor;
  - nothing in the step that waits for the host: non-finite steps are skipped through the fused
    optimizer's `found_inf`, and the loss is read only every `log_every` steps.
All graphs share one memory pool; they are replayed one at a time on one stream, and what each
returns is consumed before the next replay, so their temporaries can share memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    src: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    divisor: torch.Tensor
    loss: torch.Tensor  # output: the step's summed loss (0 when skipped)


class CapturedSteps:
    def __init__(self, update, parameters, optimizer, device: torch.device):
        """`update(src=, src_lens=, tgt_in=, tgt_out=, divisor=, dry_run=)` is one step (Trainer.update)."""
        self.update, self.parameters, self.optimizer, self.device = update, parameters, optimizer, device
        self.graphs: dict[tuple, _Captured] = {}
        self.pool = None
        for group in optimizer.param_groups:  # a tensor, so that replays see the current rate
            group["lr"] = torch.tensor(float(group["lr"]), device=device)

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"].fill_(lr)

    @staticmethod
    def key(batch) -> tuple:
        return tuple(batch.src.shape) + tuple(batch.tgt_in.shape)

    def capture(self, batch) -> None:
        """Warm up on a side stream (no update happens) and capture one step for this batch's shape."""
        static = batch.to(self.device)
        divisor = torch.ones((), device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # cuDNN and cuBLAS choose and allocate outside the capture
                self._step(static, divisor, dry_run=True)
        torch.cuda.current_stream(self.device).wait_stream(side)
        for p in self.parameters:  # gradients must exist (and stay) before capture
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            torch._foreach_zero_([p.grad for p in self.parameters])
            loss = self._step(static, divisor, dry_run=False)
        self.pool = graph.pool()
        self.graphs[self.key(batch)] = _Captured(graph, static.src, static.tgt_in, static.tgt_out, divisor, loss)

    def _step(self, static, divisor: torch.Tensor, *, dry_run: bool) -> torch.Tensor:
        # Static batches have no source lengths: every row is full length, so nothing is packed.
        return self.update(src=static.src, src_lens=None, tgt_in=static.tgt_in, tgt_out=static.tgt_out,
                           divisor=divisor, dry_run=dry_run)

    def __call__(self, batch, divisor: float) -> torch.Tensor:
        """Replay the step for `batch` (a pinned host batch); returns the loss tensor."""
        if self.key(batch) not in self.graphs:
            self.capture(batch)
        captured = self.graphs[self.key(batch)]
        captured.src.copy_(batch.src, non_blocking=True)
        captured.tgt_in.copy_(batch.tgt_in, non_blocking=True)
        captured.tgt_out.copy_(batch.tgt_out, non_blocking=True)
        captured.divisor.fill_(divisor)
        captured.graph.replay()
        return captured.loss
