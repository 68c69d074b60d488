"""Search steps run eagerly, or captured as CUDA graphs (one per row count) and replayed.

A decoder step is a few hundred small kernels (the LSTM cells, attention, the output layer, the
top-k, the buffer writes); at a few hundred or thousand rows the GPU finishes them faster than
the CPU launches them, and a graph replays them all with one launch. A search step qualifies
because it never waits for the host (nmt/decode/beam.py) and its shapes depend only on the number
of rows. What a graph needs:
  - static memory: the finished buffers and the step counter t are allocated once per search
    call and shared by its graphs; each graph owns a copy of the beam (its static input), and the
    captured step ends by copying its result over that copy, so replays advance the beam in place;
  - a warm-up outside the capture (cuBLAS and cuDNN pick and allocate there), run on copies so
    that it advances nothing.
A search captures one graph for its first row count and one more each time groups leave the
batch. Graphs live for one search call: the buffers' shapes (the longest length limit, the
source length of the attention memory) change from batch to batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch


def tensors(tree: Any) -> list[torch.Tensor]:
    """The tensors of a tree of dataclasses, lists and tuples, in a fixed order."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return [t for f in dataclasses.fields(tree) for t in tensors(getattr(tree, f.name))]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in tensors(item)]
    return []


def cloned(tree: Any) -> Any:
    """The same tree with every tensor copied."""
    if isinstance(tree, torch.Tensor):
        return tree.clone()
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        return dataclasses.replace(tree, **{f.name: cloned(getattr(tree, f.name)) for f in dataclasses.fields(tree)})
    if isinstance(tree, (list, tuple)):
        return type(tree)(cloned(item) for item in tree)
    return tree


def copy_into(target: Any, source: Any) -> None:
    """Copy every tensor of `source` into the same place of `target` (a tree of the same shapes)."""
    pairs = list(zip(tensors(target), tensors(source), strict=True))
    for t, s in pairs:
        if t is not s:
            t.copy_(s)


class EagerSteps:
    """Runs `step(beam, finished, t)` as it is, then counts the step."""

    def __init__(self, step: Callable):
        self.step = step

    def __call__(self, beam, finished, t: torch.Tensor):
        beam = self.step(beam, finished, t)
        t.add_(1)
        return beam


class CapturedSteps:
    """`step(beam, finished, t)` captured once per row count, then replayed (CUDA only)."""

    def __init__(self, step: Callable, device: torch.device):
        self.step, self.device = step, device
        self.graphs: dict[int, tuple[Any, Any]] = {}  # rows -> (graph, its static beam)
        self.pool = None  # one memory pool: the graphs run one at a time, in capture order

    def capture(self, beam, finished, t: torch.Tensor):
        static = cloned(beam)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # on copies: the warm-up must not advance the search
                self.step(cloned(static), cloned(finished), t.clone())
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            copy_into(static, self.step(static, finished, t))
            t.add_(1)
        self.pool = graph.pool()
        return graph, static

    def __call__(self, beam, finished, t: torch.Tensor):
        rows = beam.prev.numel()
        if rows not in self.graphs:
            self.graphs[rows] = self.capture(beam, finished, t)
        graph, static = self.graphs[rows]
        if beam is not static:  # a new row count (or the first step): its state enters the graph's memory
            copy_into(static, beam)
        graph.replay()
        return static
