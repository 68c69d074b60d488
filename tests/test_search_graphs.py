"""Search steps captured as CUDA graphs: the wiring on the CPU, real capture on a GPU.

On the CPU, capture is emulated as tests/test_graphs.py does it: the captured step runs once under
a dispatch mode that records every operator with the very tensors it read and wrote, and a replay
runs exactly those operators again on those tensors, as a CUDA graph replays its kernels on its
static memory. A real capture runs nothing, so the emulation also undoes every write the recorded
run made (the beam, the finished buffers, the step counter). Anything the step did outside the
recording, or only at capture time, is missing from the replays, as on a GPU; a host read inside
the step is an error, as under real capture.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nmt.config import DecodeOptions
from nmt.data.tokenizer import EOS
from nmt.decode import beam as loop
from nmt.decode import graphs
from nmt.decode.search import beam_search, greedy_search, search, search_batches
from nmt.model import Seq2Seq
from nmt.model.ensemble import Ensemble
from tests.test_search import random_batch, random_model


def written_arguments(func, args, kwargs):
    for i, argument in enumerate(func._schema.arguments):
        if argument.alias_info is not None and argument.alias_info.is_write:
            value = args[i] if i < len(args) else kwargs.get(argument.name)
            for tensor in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(tensor, torch.Tensor):
                    yield tensor


class Recorder(TorchDispatchMode):
    """Records each operator call, and the value of every tensor before an operator wrote it."""

    def __init__(self):
        super().__init__()
        self.calls, self.overwritten = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError("the captured step reads a tensor on the host (.item(), bool(), ...)")
        self.overwritten += [(tensor, tensor.clone()) for tensor in written_arguments(func, args, kwargs)]
        out = func(*args, **kwargs)
        self.calls.append((func, args, kwargs, out))
        return out

    def undo(self) -> None:
        for tensor, before in reversed(self.overwritten):
            tensor.copy_(before)


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _copy_into(recorded, fresh) -> None:
    """A replayed call's new results go into the tensors the recording saw (the static memory);
    views and in-place results already are that memory."""
    if isinstance(recorded, torch.Tensor) and isinstance(fresh, torch.Tensor):
        if recorded is not fresh and not _same_memory(recorded, fresh):
            recorded.copy_(fresh)
    elif isinstance(recorded, (tuple, list)):
        for r, f in zip(recorded, fresh):
            _copy_into(r, f)


class FakeGraph:
    """Stands in for a CUDA graph: replay reruns the recorded operators, nothing else."""

    replays = 0

    def __init__(self):
        self.calls = []

    def pool(self):
        return None

    def capture_begin(self, pool=None, capture_error_mode="global"):
        self._recorder = Recorder()
        self._recorder.__enter__()

    def capture_end(self):
        self._recorder.__exit__(None, None, None)
        self.calls = self._recorder.calls
        self._recorder.undo()  # a real capture runs nothing

    def replay(self):
        FakeGraph.replays += 1
        for func, args, kwargs, out in self.calls:
            _copy_into(out, func(*args, **kwargs))


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda's graph API, emulated on the CPU; returns the CapturedSteps made meanwhile."""

    class Stream:
        def __init__(self, *args):
            pass

        def wait_stream(self, other):
            pass

    made = []

    class Recorded(graphs.CapturedSteps):
        def __init__(self, *args):
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(graphs.torch.cuda, "Stream", Stream)
    monkeypatch.setattr(graphs.torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(graphs.torch.cuda, "current_stream", lambda *a: Stream())
    monkeypatch.setattr(graphs.torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(graphs, "CapturedSteps", Recorded)
    # shrink often, so that several row counts are captured
    monkeypatch.setattr(loop, "CHECK_EVERY", 2)
    return made


SEARCHES = {
    "beam": lambda model, src, lens, **k: beam_search(model, src, lens, beam=3, n_best=3, length_penalty=0.6, **k),
    "greedy": lambda model, src, lens, **k: [[h] for h in greedy_search(model, src, lens, **k)],
    "beam+ngram+min": lambda model, src, lens, **k: beam_search(model, src, lens, beam=2, n_best=2, min_len_b=2,
                                                                no_repeat_ngram=2, **k),
}
MODELS = {"paper": {}, "gru+general+feed": dict(cell="gru", attention="general", input_feeding=True),
          # tied: under autocast its output layer reads a float16 copy of the shared weight (Seq2Seq.half_output)
          "tied+general+feed": dict(embed=8, tie_embeddings=True, attention="general", input_feeding=True)}


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("name", SEARCHES)
def test_captured_steps_search_like_the_eager_loop(fake_cuda, monkeypatch, name, model_name):
    # oneDNN's CPU kernels may keep state below the dispatcher, where no recording sees it.
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    model, (src, lens) = random_model(5, **MODELS[model_name]), random_batch(6, size=10)
    limits = dict(max_len_a=1.0, max_len_b=3)
    eager = SEARCHES[name](model, src, lens, **limits)
    replays = FakeGraph.replays
    captured = SEARCHES[name](model, src, lens, cuda_graphs=True, **limits)
    [steps] = fake_cuda
    assert len(steps.graphs) >= 2 and FakeGraph.replays > replays  # several row counts, each replayed
    assert [[h.tokens for h in s] for s in captured] == [[h.tokens for h in s] for s in eager]
    # Captured search pads the attention memory (masked positions): float sums in another order
    for mine, its in zip(captured, eager):
        assert [h.log_prob for h in mine] == pytest.approx([h.log_prob for h in its], abs=1e-5)
        assert [h.token_scores for h in mine] == [pytest.approx(h.token_scores, abs=1e-5) for h in its]


def test_every_capture_runs_on_one_side_stream_warmed_up_once(fake_cuda, monkeypatch):
    """Captures of several shapes share one side stream, and only the first warms up (a step run
    outside any recording): the allocator keeps memory per stream, so a stream per capture made
    every warm-up allocate afresh (nmt/decode/graphs.py)."""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    streams, stepped = [], []

    class Counted(graphs.torch.cuda.Stream):
        def __init__(self, *args):
            super().__init__(*args)
            streams.append(self)

    advance = loop.advance
    monkeypatch.setattr(graphs.torch.cuda, "Stream", Counted)
    monkeypatch.setattr(loop, "advance", lambda *args, **kwargs: stepped.append(1) or advance(*args, **kwargs))
    model, (src, lens) = random_model(5), random_batch(6, size=10)
    SEARCHES["beam"](model, src, lens, cuda_graphs=True, max_len_a=1.0, max_len_b=3)
    [steps] = fake_cuda
    assert steps.captures >= 2 and len(streams) == 1
    assert len(stepped) == steps.captures + 1  # each capture's recorded step, and one warm-up
    assert steps.capture_seconds > 0


def test_graphs_outlive_a_call_and_serve_the_next_batch_of_the_same_shapes(fake_cuda, monkeypatch):
    """A second batch with the same buffer widths replays the first one's graphs, capturing
    nothing, and finds what the eager loop finds; the first call's results are copies, untouched
    by the second."""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    model = random_model(5)
    (src, lens), (other, _) = random_batch(6, size=10), random_batch(7, size=10)
    # Other sentences of the same lengths: the same widths, and groups end at the same steps
    src2, lens2 = other[:, :src.size(1)].masked_fill(src == 0, 0), lens
    limits = dict(max_len_a=1.0, max_len_b=3)
    run = SEARCHES["beam"]
    first = run(model, src, lens, cuda_graphs=True, **limits)
    first_tokens = [[h.tokens for h in s] for s in first]
    [steps] = fake_cuda
    captures = steps.captures
    second = run(model, src2, lens2, cuda_graphs=True, **limits)
    assert fake_cuda == [steps] and steps.captures == captures  # no new capture: the same shapes came again
    eager = run(model, src2, lens2, **limits)
    assert [[h.tokens for h in s] for s in second] == [[h.tokens for h in s] for s in eager]
    assert [[h.tokens for h in s] for s in first] == first_tokens


def test_shapes_beyond_the_cap_run_eagerly_to_the_same_results(fake_cuda, monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    monkeypatch.setattr(graphs, "MAX_GRAPHS", 1)
    model, (src, lens) = random_model(5), random_batch(6, size=10)
    limits = dict(max_len_a=1.0, max_len_b=3)
    captured = SEARCHES["beam"](model, src, lens, cuda_graphs=True, **limits)
    [steps] = fake_cuda
    assert len(steps.graphs) == 1 and steps.captures == 1  # the first shape; the shrunk batch ran eagerly
    eager = SEARCHES["beam"](model, src, lens, **limits)
    assert [[h.tokens for h in s] for s in captured] == [[h.tokens for h in s] for s in eager]


def test_padding_the_attention_memory_changes_no_step():
    """Captured search pads the memory to a bucketed width (masked): the same log-probabilities."""
    model, (src, lens) = random_model(3, attention="general", input_feeding=True), random_batch(4, size=6)
    state = model.encode(src, lens)
    padded = state.padded_source(lambda s: s + 5)
    assert padded.memory.size(1) == state.memory.size(1) + 5 and not padded.src_mask[:, -5:].any()
    prev = torch.full((6,), 2)
    with torch.no_grad():
        a, _ = model.decode_step(prev, state)
        b, _ = model.decode_step(prev, padded)
    assert torch.allclose(a, b, atol=1e-6)


def test_the_autocast_twin_holds_the_weights_cast_and_follows_the_model(monkeypatch):
    """Captured steps under autocast run a copy in the autocast dtype, refreshed at every call."""
    monkeypatch.setattr(graphs.torch, "is_autocast_enabled", lambda device: True)
    monkeypatch.setattr(graphs.torch, "get_autocast_dtype", lambda device: torch.bfloat16)
    model = random_model(4)
    twin = graphs.autocast_twin(model)
    assert twin is not model
    # bf16, but for the output layer: float16 (Seq2Seq.half_output)
    assert all(p.dtype == (torch.float16 if name.startswith("output.") else torch.bfloat16)
               for name, p in twin.named_parameters())
    assert torch.equal(twin.output.weight, model.output.weight.to(torch.float16))
    with torch.no_grad():
        model.output.weight.add_(1.0)  # trained in place
    assert graphs.autocast_twin(model) is twin and torch.equal(twin.output.weight,
                                                               model.output.weight.to(torch.float16))
    tied_model = Seq2Seq(src_vocab_size=11, tgt_vocab_size=11, embed=8, hidden=8, layers=1, tie_embeddings=True)
    tied = graphs.autocast_twin(tied_model)  # the shared weight stays bf16; the output reads a float16 copy
    assert tied.output.weight is tied.tgt_embed.weight
    assert all(p.dtype == (torch.float16 if name == "output.bias" else torch.bfloat16)
               for name, p in tied.named_parameters())
    assert torch.equal(tied.half_weight, tied_model.output.weight.to(torch.float16))
    assert "half_weight" not in tied.state_dict()
    with torch.no_grad():
        tied_model.tgt_embed.weight.mul_(2.0)  # trained in place: the copy follows at the next call
    assert graphs.autocast_twin(tied_model) is tied
    assert torch.equal(tied.half_weight, tied_model.output.weight.to(torch.float16))
    ensemble = Ensemble([model, random_model(5)], "mean")
    twins = graphs.autocast_twin(ensemble)
    assert twins.models[0] is twin and twins.mode == "mean" and graphs.autocast_twin(ensemble) is twins
    assert graphs.autocast_twin(twin) is twin and graphs.autocast_twin(twins) is twins  # already in the dtype
    monkeypatch.setattr(graphs.torch, "is_autocast_enabled", lambda device: False)
    assert graphs.autocast_twin(model) is model
    monkeypatch.undo()  # (the autocast context below must see the real setting, or it leaves autocast on)
    assert tied._step_logits(torch.ones(3, 8, dtype=torch.bfloat16)).dtype == torch.float16  # logits in float16


def test_greedy_and_beam_requests_alternating_keep_each_ones_graphs(fake_cuda, monkeypatch):
    """A server mixing greedy and beam requests: each way's graphs stay; nothing is captured twice."""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    model, (src, lens) = random_model(5), random_batch(6, size=10)
    limits = dict(max_len_a=1.0, max_len_b=3)
    for name in ("greedy", "beam"):
        SEARCHES[name](model, src, lens, cuda_graphs=True, **limits)
    captured = sum(steps.captures for steps in fake_cuda)
    for name in ("greedy", "beam", "greedy"):
        SEARCHES[name](model, src, lens, cuda_graphs=True, **limits)
    assert len(fake_cuda) == 2 and sum(steps.captures for steps in fake_cuda) == captured


def test_kept_graphs_do_not_keep_their_model_alive(fake_cuda, monkeypatch):
    import gc
    import weakref

    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    model, (src, lens) = random_model(5), random_batch(6, size=10)
    SEARCHES["beam"](model, src, lens, cuda_graphs=True, max_len_a=1.0, max_len_b=3)
    alive = weakref.ref(model)
    assert alive() in graphs._CACHES
    del model
    gc.collect()
    assert alive() is None


def test_bucketed_sizes():
    assert [graphs.bucketed_width(n) for n in (1, 16, 17, 33, 200)] == [16, 16, 32, 64, 256]
    assert [graphs.bucketed_slots(n) for n in (1, 5, 7, 13, 100, 128, 600)] == [1, 6, 8, 16, 128, 128, 600]


def test_an_ensemble_is_captured_too(fake_cuda, monkeypatch):
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    model = Ensemble([random_model(1, attention="dot"), random_model(2)], "log_linear")
    src, lens = random_batch(3, size=8)
    eager = beam_search(model, src, lens, beam=2, n_best=2, max_len_a=1.0, max_len_b=3)
    captured = beam_search(model, src, lens, beam=2, n_best=2, max_len_a=1.0, max_len_b=3, cuda_graphs=True)
    assert len(fake_cuda[0].graphs) >= 1
    assert [[h.tokens for h in s] for s in captured] == [[h.tokens for h in s] for s in eager]


def test_cuda_graphs_are_off_on_the_cpu():
    """The option only asks: on the CPU search runs eagerly (and needs no torch.cuda)."""
    model, (src, lens) = random_model(2), random_batch(2, size=4)
    options = DecodeOptions(beam=3, max_len_a=1.0, max_len_b=2)
    found = search(model, src, lens, options)
    again = search(model, src, lens, options.override(cuda_graphs=True))
    assert [[(h.tokens, h.log_prob) for h in s] for s in again] == [[(h.tokens, h.log_prob) for h in s] for s in found]


# --- on a GPU ---------------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("model_name", MODELS)
def test_real_cuda_graphs_search_like_the_eager_loop(model_name, bf16):
    model = random_model(5, **MODELS[model_name]).cuda()
    src, lens = random_batch(6, size=16)
    src = src.cuda()
    options = DecodeOptions(beam=4, n_best=4, max_len_a=1.0, max_len_b=6)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        eager = search(model, src, lens, options)
        captured = search(model, src, lens, options.override(cuda_graphs=True))
    assert [[h.tokens for h in s] for s in captured] == [[h.tokens for h in s] for s in eager]
    for mine, its in zip(captured, eager):
        assert [h.log_prob for h in mine] == pytest.approx([h.log_prob for h in its], abs=1e-4)


@needs_cuda
@pytest.mark.parametrize("cuda_graphs", [False, True])
@pytest.mark.parametrize("model_name", MODELS)
def test_real_batches_searched_in_turn_with_the_encoder_ahead_find_what_each_search_finds(model_name, cuda_graphs):
    """search_batches queues each batch before reading the one before, and encodes the next batch
    in a worker thread on a side stream: the same hypotheses and scores as one search per batch."""
    model = random_model(5, **MODELS[model_name]).cuda()
    batches = [(src.cuda(), lens) for src, lens in (random_batch(seed, size=12) for seed in (6, 7, 8, 9))]
    options = DecodeOptions(beam=3, n_best=3, max_len_a=1.0, max_len_b=6, cuda_graphs=cuda_graphs)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        one_by_one = [search(model, src, lens, options) for src, lens in batches]
        in_turn = list(search_batches(model, iter(batches), options))
    assert [[[(h.tokens, h.log_prob, h.token_scores) for h in s] for s in found] for found in in_turn] == \
        [[[(h.tokens, h.log_prob, h.token_scores) for h in s] for s in found] for found in one_by_one]


@needs_cuda
@pytest.mark.parametrize("model_name", MODELS)
def test_real_graphs_kept_between_calls_in_separate_autocast_contexts(model_name):
    """As Translator calls it: each batch in its own autocast context; the second batch replays
    the graphs the first captured, and still finds what the eager loop finds."""
    model = random_model(5, **MODELS[model_name]).cuda()
    (src, lens), (other, _) = random_batch(6, size=16), random_batch(7, size=16)
    src2 = other[:, :src.size(1)].masked_fill(src == 0, 0)
    options = DecodeOptions(beam=4, n_best=4, max_len_a=1.0, max_len_b=6)
    found = {}
    for mode in ("graphs", "eager", "fresh graphs"):
        for name, batch in (("first", src), ("second", src2)):
            if mode == "fresh graphs":
                graphs._CACHES.clear()  # the second batch captures its own graphs
            with torch.autocast("cuda", dtype=torch.bfloat16):
                found[mode, name] = search(model, batch.cuda(), lens, options.override(cuda_graphs=mode != "eager"))
            torch.cuda.empty_cache()  # what the first context cached is gone for good
    for name in ("first", "second"):  # fresh graphs: the same kernels on the same shapes, the same numbers
        assert [[(h.tokens, h.log_prob) for h in s] for s in found["graphs", name]] == \
            [[(h.tokens, h.log_prob) for h in s] for s in found["fresh graphs", name]], name
        assert [[h.tokens for h in s] for s in found["graphs", name]] == \
            [[h.tokens for h in s] for s in found["eager", name]], name


@needs_cuda
@pytest.mark.parametrize("model_name", MODELS)
def test_the_eager_search_loop_never_waits_for_the_gpu_between_checks(monkeypatch, model_name):
    """Between two checks the loop only queues work: with no check at all, a whole search runs
    under torch's "error on synchronisation" mode (the results are read after it)."""
    model = random_model(5, **MODELS[model_name]).cuda()
    with torch.no_grad():
        model.output.bias[EOS] = -50.0  # every hypothesis runs to its limit
    src, lens = random_batch(6, size=16)
    src = src.cuda()
    monkeypatch.setattr(loop, "CHECK_EVERY", 10 ** 6)

    def run():
        return loop.run(model, src, lens, k=4, samples=1, pick=loop.best_extensions,
                        min_len=torch.zeros(16, dtype=torch.long), max_len=lens + 6)

    with torch.no_grad():
        run()  # warm-up: cuBLAS and the allocator settle
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # any synchronising call now raises
        try:
            pending = run()  # the results are on their way to the host, no waiting
        finally:
            torch.cuda.set_sync_debug_mode("default")
    finished = pending.finished()
    assert int((finished.length[:, :4] >= 0).sum()) == 16 * 4  # every hypothesis ended at its limit
