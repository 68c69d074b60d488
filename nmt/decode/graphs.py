"""Search steps run eagerly, or captured as CUDA graphs and replayed.

A decoder step is a few hundred small kernels (the LSTM cells, attention, the output layer, the
top-k, the buffer writes); at a few hundred or thousand rows the GPU finishes them faster than
the CPU launches them, and a graph replays them all with one launch. A search step qualifies
because it never waits for the host (nmt/decode/beam.py) and its shapes depend only on the number
of rows and the buffers' widths. What a graph needs:
  - static memory: each graph owns a copy of the beam (its static input), and the captured step
    ends by copying its result over that copy, so replays advance the beam in place; the finished
    buffers and the step counter t are static too, one set per shape, shared by the graphs;
  - a warm-up outside the capture (cuBLAS and cuDNN set up and allocate there), run on copies so
    that it advances nothing: once, on the one side stream every capture uses.
Graphs outlive a search call: `for_model` keeps them per model (and per way of searching), keyed
by the shapes of everything they read, so the next batch of the same shapes replays them at
once. A capture costs about as much as a few dozen replayed steps, and a translation of many
batches would otherwise pay it several times per batch. For that the search makes its shapes
repeat: the buffers' widths (the length limit) are rounded up to a power of two
(`bucketed_width`), and a shrinking batch keeps a number of slots from a short ladder
(`bucketed_slots`, done slots filling the rest).
"""

from __future__ import annotations

import copy
import dataclasses
import time
import weakref
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


MAX_GRAPHS = 128  # per model and way of searching: each holds a static copy of the beam


class CapturedSteps:
    """`step(beam, finished, t)` captured once per shape (up to MAX_GRAPHS), then replayed (CUDA only)."""

    def __init__(self, step: Callable, device: torch.device):
        self.step, self.device = step, device
        self.graphs: dict[tuple, tuple[Any, Any]] = {}  # shapes -> (graph, its static beam)
        self.buffers: dict[tuple, Any] = {}  # (groups, K, width) -> static (Finished, t)
        self.pool = None  # one memory pool: the graphs run one at a time
        self.side = None  # one side stream for every capture (see `capture`)
        self.warmed = False
        self.captures = 0
        self.capture_seconds = 0.0  # host time spent capturing, the warm-up included
        self.last: tuple = (None, None, None)  # the last replay: (its static beam, finished, graph)

    def static(self, shape: tuple, empty: Callable[[], Any]):
        """The static finished buffers and step counter for this shape, emptied (`empty()` makes
        a fresh pair, whose values a reused pair gets)."""
        fresh = empty()
        if shape not in self.buffers:
            self.buffers[shape] = fresh
        else:
            copy_into(self.buffers[shape], fresh)
        return self.buffers[shape]

    def capture(self, beam, finished, t: torch.Tensor):
        """Record one step, on a side stream, after a warm-up step there on copies (the first
        capture only). By hand (capture_begin/end) rather than torch.cuda.graph, which
        synchronises and empties the allocator's cache first: a search captures while it runs, and
        refilling that cache costs more than the capture.

        Why one side stream, warmed up once: a warm-up runs outside the capture what must not
        happen inside it (the side stream's cuBLAS workspace, the first kernels loaded), and the
        allocator keeps memory per stream. A new stream per capture (torch hands them out from a
        pool of 32) made a process's first captures warm up on fresh streams, allocating afresh:
        on an H200, in a fresh process, the attention model's first pass at beam 1 spent 0.31 s
        of its 0.62 s on 13 captures, against 0.03 s of 0.30 s with one stream warmed up once,
        with the same hypotheses (benchmarks/README.md, `188e12b` → `f04ae6b`). A later capture of
        other shapes needs nothing more: the kernels and cuBLAS's heuristics it meets are allowed
        inside a capture (the GPU tests capture many shapes so)."""
        started = time.perf_counter()
        static = cloned(beam)
        if self.side is None:
            self.side = torch.cuda.Stream(self.device)
        side = self.side
        side.wait_stream(torch.cuda.current_stream(self.device))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(side):
            if not self.warmed:
                self.step(cloned(static), cloned(finished), t.clone())  # the warm-up must not advance the search
                self.warmed = True
            # thread_local: a server's other threads (other models) may launch work meanwhile
            graph.capture_begin(pool=self.pool, capture_error_mode="thread_local")
            try:
                copy_into(static, self.step(static, finished, t))
                t.add_(1)
            finally:
                graph.capture_end()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.pool = graph.pool()
        self.captures += 1
        self.capture_seconds += time.perf_counter() - started
        return graph, static

    def __call__(self, beam, finished, t: torch.Tensor):
        if beam is self.last[0] and finished is self.last[1]:  # the last replay's result: replay again
            self.last[2].replay()  # (walking the trees for the key costs more host time than a replay)
            return beam
        key = tuple(tuple(x.shape) for x in tensors((beam, finished)))
        if key not in self.graphs:
            if len(self.graphs) >= MAX_GRAPHS:  # (batches of many sizes, say from a server): the rest run eagerly
                beam = self.step(beam, finished, t)
                t.add_(1)
                return beam
            self.graphs[key] = self.capture(beam, finished, t)
        graph, static = self.graphs[key]
        if beam is not static:  # a new shape, a new batch, or the first step: the beam enters the graph's memory
            copy_into(static, beam)
        graph.replay()
        self.last = (static, finished, graph)
        return static


@dataclasses.dataclass
class _ModelGraphs:
    weights: tuple  # the device addresses of the model's weights when its graphs were captured
    steps: dict  # (way of searching, modes, autocast) -> CapturedSteps


# model -> _ModelGraphs. Weak keys: a model's graphs go with it. Nothing kept here may refer to the
# model (a value holding its key keeps both forever): `run` takes each call's step back at its end.
_CACHES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def for_model(model, step: Callable, how: tuple, device: torch.device) -> CapturedSteps:
    """The captured steps of `model` searched in way `how` (the pick, n-gram blocking...), kept
    between calls, one set per way (a server mixing greedy and beam requests keeps both). A graph
    reads the weights' memory: when they moved (the model moved, or loaded into new tensors),
    every graph of the model is dropped, never replayed. A graph was recorded under one autocast
    setting and one train/eval mode: both are part of the key."""
    members = _members(model)
    weights = tuple(p.data_ptr() for m in members for p in m.parameters())
    graphs = _CACHES.get(model)
    if graphs is None or graphs.weights != weights:
        graphs = _CACHES[model] = _ModelGraphs(weights, {})
    key = (how, tuple(m.training for m in members), torch.is_autocast_enabled("cuda"),
           torch.get_autocast_dtype("cuda"))
    steps = graphs.steps.get(key)
    if steps is None:
        steps = graphs.steps[key] = CapturedSteps(step, device)
    steps.step = step  # the same computation (same key); this call's closure
    return steps


_TWINS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> its copy in the autocast dtype
_IS_TWIN: "weakref.WeakSet" = weakref.WeakSet()  # the copies themselves


def autocast_twin(model):
    """Under autocast, the model that search runs, eager or captured: a copy of `model` in the
    autocast dtype, kept per model, its weights copied from `model` at every call (so a model
    trained or averaged in place is searched as it is now). Else `model` itself.

    Why: autocast caches its bf16 casts of the weights only until its context closes. A search
    captured inside a caller's context would record reads of that cache, and replaying the graphs
    in a later call, inside another context, would read memory freed since. Casting inside the
    graphs instead would recast every weight at every step (for the paper's model, 64M values a
    step). The twin's weights are already bf16: autocast casts nothing, and they live as long as
    the model. The eager search takes the twin too, so that both searches compute the same
    numbers; they are autocast's up to rounding (a few operators autocast would run on float32
    weights, such as the embedding lookup, read bf16 ones, and a model's output layer is float16,
    see Seq2Seq.half_output).
    """
    if (not torch.is_autocast_enabled("cuda") or model in _IS_TWIN
            or _in_dtype(model, torch.get_autocast_dtype("cuda"))):
        return model  # (a twin, or a model already in the autocast dtype, is its own twin)
    twin = _TWINS.get(model)
    if hasattr(model, "models"):  # an Ensemble (nmt/model/ensemble.py): of its members' twins, each refreshed
        twins = [autocast_twin(member) for member in model.models]
        if twin is None or any(a is not b for a, b in zip(twin.models, twins, strict=True)):
            twin = _TWINS[model] = type(model)(twins, model.mode)
            _IS_TWIN.add(twin)
        return twin
    dtype = torch.get_autocast_dtype("cuda")
    if twin is None or next(twin.parameters()).dtype != dtype:
        twin = _TWINS[model] = copy.deepcopy(model).to(dtype)
        if hasattr(twin, "half_output"):  # its output layer in float16 (nmt/model/seq2seq.py says why)
            twin.half_output()
        _IS_TWIN.add(twin)
    twin.train(model.training)
    with torch.no_grad():
        for mine, theirs in zip(twin.parameters(), model.parameters(), strict=True):
            mine.copy_(theirs)
    if hasattr(twin, "sync_half_output"):  # a tied output layer's float16 copy, from the model's own weight
        twin.sync_half_output(model.output.weight)
    return twin


def _in_dtype(model, dtype: torch.dtype) -> bool:
    return all(p.dtype == dtype for m in _members(model) for p in m.parameters() if p.is_floating_point())


def _members(model) -> list:
    """An Ensemble's models (nmt/model/ensemble.py), or the one model."""
    return getattr(model, "models", None) or [model]


def bucketed_width(length: int) -> int:
    """A buffer width of at least `length`: the next power of two (at least 16)."""
    return max(16, 1 << (length - 1).bit_length())


LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def bucketed_slots(live: int) -> int:
    """How many slots a batch with `live` live groups keeps: the next rung of LADDER (powers of
    two and halfway between), or `live` itself beyond it."""
    return next((rung for rung in LADDER if rung >= live), live)
