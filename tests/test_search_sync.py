"""The search loop never waits for the device but once every CHECK_EVERY steps.

On a GPU, reading a tensor on the host (`.item()`, `bool()`, `.tolist()`, `nonzero()`, a
`torch.tensor(list)` copy) makes the CPU wait until the device has finished everything queued, so
a loop that does it every step cannot run ahead of the GPU. On the CPU no wait can be seen, but the
reads can be counted: every host read of a tensor's value goes through `aten._local_scalar_dense`
(or is `nonzero`, `masked_select`, boolean indexing, or `lift_fresh`, a tensor made from Python
data), and `Tensor.tolist` is counted by a wrapper. A search of L steps must make at most
ceil(L / CHECK_EVERY) of them, plus a constant for its setup and its end: each encoder's packing
reads its lengths (2 reads, of tensors that live on the host anyway), the longest length limit and
whether any sentence has a minimum length are read on the host (2), and at the end the finished hypotheses are read once (4 reads, and the
positions of those returned sent to the device: 1).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nmt.data.tokenizer import EOS
from nmt.decode import beam as loop
from nmt.decode.sampling import sampling_generator
from nmt.decode.search import Counts, beam_search, greedy_search, sample_search
from nmt.model.ensemble import Ensemble
from tests import search_reference as old
from tests.test_search import random_batch, random_model



def setup_and_end(members: int = 1) -> int:
    return 2 * members + 2 + 4 + 1  # each member's encoder packs its lengths


class HostReads(TorchDispatchMode):
    """Counts the operators that read a tensor's values on the host."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        boolean_index = func is torch.ops.aten.index.Tensor and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])
        if boolean_index or func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default,
                                     torch.ops.aten.masked_select.default, torch.ops.aten.lift_fresh.default):
            self.reads.append(str(func))
        return func(*args, **kwargs)


@pytest.fixture
def count_reads(monkeypatch):
    """count_reads(fn) -> (fn's result, the host reads it made)."""

    def run(fn):
        reads = HostReads()
        tolist = torch.Tensor.tolist

        def counted_tolist(tensor):
            reads.reads.append("tolist")
            return tolist(tensor)

        monkeypatch.setattr(torch.Tensor, "tolist", counted_tolist)
        with reads:
            result = fn()
        monkeypatch.setattr(torch.Tensor, "tolist", tolist)
        return result, reads.reads

    return run


def endless_model(**options):
    """A random model that never chooses EOS: every hypothesis runs to its length limit."""
    model = random_model(3, **options)
    with torch.no_grad():
        model.output.bias[EOS] = -50.0
    return model


SEARCHES = {
    "beam": lambda model, src, lens, **limits: beam_search(model, src, lens, beam=4, n_best=2, **limits),
    "greedy": lambda model, src, lens, **limits: greedy_search(model, src, lens, **limits),
    "sample": lambda model, src, lens, **limits: sample_search(model, src, lens, n_samples=3, temperature=1.0,
                                                               top_k=5, top_p=0.9,
                                                               generator=sampling_generator(1, src.device), **limits),
    "beam+ngram+min": lambda model, src, lens, **limits: beam_search(model, src, lens, beam=3, no_repeat_ngram=2,
                                                                     min_len_b=4, **limits),
}


@pytest.mark.parametrize("model_options", [{}, dict(attention="general", input_feeding=True)],
                         ids=["paper", "attention+feed"])
@pytest.mark.parametrize("name", SEARCHES)
def test_the_search_loop_reads_the_device_once_per_check(count_reads, name, model_options):
    model = endless_model(**model_options)
    src, lens = random_batch(4, size=6)
    lens[0] = 6  # the longest limit: 6 + 34 = 40 steps
    limits = dict(max_len_a=1.0, max_len_b=34)
    counts = Counts()
    _, reads = count_reads(lambda: SEARCHES[name](model, src, lens, counts=counts, **limits))
    assert counts.steps == 40
    assert len(reads) <= math.ceil(counts.steps / loop.CHECK_EVERY) + setup_and_end(), reads


def test_the_counter_sees_per_step_reads(count_reads, monkeypatch):
    """The same count catches a loop that reads every step: the old search, or ours checking at every step."""
    model, (src, lens) = endless_model(), random_batch(4, size=6)
    lens[0] = 6
    limits = dict(max_len_a=1.0, max_len_b=34)
    _, reads = count_reads(lambda: old.beam_search(model, src, lens, beam=4, **limits))
    assert len(reads) >= 2 * 40
    monkeypatch.setattr(loop, "CHECK_EVERY", 1)
    _, reads = count_reads(lambda: beam_search(model, src, lens, beam=4, **limits))
    assert len(reads) >= 39


def test_an_ensemble_searches_without_host_reads_too(count_reads):
    model, (src, lens) = Ensemble([endless_model(), endless_model(cell="gru")], "log_linear"), random_batch(4, size=6)
    lens[0] = 6
    counts = Counts()
    _, reads = count_reads(lambda: beam_search(model, src, lens, beam=3, max_len_a=1.0, max_len_b=34, counts=counts))
    assert len(reads) <= math.ceil(counts.steps / loop.CHECK_EVERY) + setup_and_end(members=2), reads
