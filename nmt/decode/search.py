"""Greedy search, beam search and sampling over any model with `encode` / `decode_step`.

Search knows the model only through that protocol and its state's two methods: `select(indices)`
(keep any rows) and `reorder(indices, sentences=None)` (keep rows that stay with their sentence,
so the attention memory, one row per sentence, is copied only when sentences leave the batch;
see nmt/model/seq2seq.py's DecoderState). `search` takes its settings whole, as one
`DecodeOptions`; the three searches below take plain keywords. All three run the device-side
loop of nmt/decode/beam.py, which says step by step what happens; they differ in how a step picks
its candidates (the 2K best extensions, the most likely token, a sampled one). A model may also
offer `decode_scores` (its logits besides the log-probabilities), in which the search ranks tokens
under autocast. `launch` queues a search and returns a function that reads its results;
`search_batches` runs many batches that way, the next one queued (and on CUDA encoded, by a worker
thread: nmt/decode/ahead.py) before the results of the one before are read.

What every search obeys:
  - lengths: at most floor(max_len_a * source length + max_len_b) tokens, EOS included (at least
    1); EOS is not allowed before floor(min_len_a * source length + min_len_b) tokens, EOS not
    counted (0: any time). At the maximum every hypothesis ends, minimum reached or not;
  - no_repeat_ngram n > 0: a hypothesis never holds the same n tokens in a row twice;
  - ranking of finished hypotheses (`collect`): log_prob / length**alpha - word_penalty * length,
    length counting EOS. A positive word penalty favours shorter translations, a negative one
    longer (Marian's --word-penalty); within one step every live hypothesis has the same length,
    so the penalty and alpha change only which finished hypotheses rank first.
A hypothesis's log_prob is the model's (for an ensemble, the combined distribution's), and
token_scores holds its terms: one per token, EOS's last.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Sequence, TypeVar

import numpy as np
import torch

from nmt.config import DecodeOptions
from nmt.decode import beam as loop
from nmt.decode.ahead import EncoderAhead
from nmt.decode.beam import Counts, Finished, best_extensions, most_likely, top_extension
from nmt.decode.graphs import autocast_twin
from nmt.decode.sampling import sampled_candidates, sampling_generator

T = TypeVar("T")

__all__ = ["Counts", "Hypothesis", "beam_search", "greedy_search", "launch", "sample_search", "search",
           "in_turn", "search_batches"]


@dataclass(order=True)
class Hypothesis:
    rank_score: float  # the score search ranks by: log_prob / length**alpha - word_penalty * length
    tokens: list[int] = field(compare=False)  # without BOS and EOS
    log_prob: float = field(compare=False)  # sum of the log-probabilities, EOS included
    token_scores: list[float] = field(default_factory=list, compare=False)  # one per token, then EOS's


def max_lengths(src_lens: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """Most output tokens (EOS included) allowed per sentence: a * source length + b, at least 1."""
    return (src_lens.double() * a + b).floor().clamp(min=1).long()


def min_lengths(src_lens: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """Fewest tokens before EOS per sentence: a * source length + b."""
    return (src_lens.double() * a + b).floor().long()


def length_normalize(log_prob: float, length: int, alpha: float) -> float:
    return log_prob / (length ** alpha) if alpha else log_prob


def collect(finished: Finished, *, groups_per_sentence: int, n_best: int, length_penalty: float,
            word_penalty: float) -> list[list[Hypothesis]]:
    """The host's one read of the results: each sentence's n_best hypotheses, best first.

    Ranking needs only the lengths and log-probabilities: the rank score (the module docstring's
    rule, in float64) of every slot of every sentence at once, in numpy; the tokens and their scores are read for the hypotheses
    returned alone. (A loop in Python over every finished slot took 3-7 ms a batch, while the
    device waited for the next batch's steps.) A sentence whose hypotheses all died (every
    continuation forbidden) gets one empty hypothesis scored -inf."""
    k = finished.length.size(1) - 1  # the last slot is the sink
    lengths = finished.length[:, :k].numpy().reshape(-1, groups_per_sentence * k)  # (sentences, slots)
    log_probs = finished.log_prob[:, :k].numpy().astype(np.float64).reshape(lengths.shape)
    found = lengths >= 0
    steps = np.where(found, lengths + 1, 1)  # EOS counted (1 in empty slots: no division by 0)
    scores = log_probs / steps ** length_penalty if length_penalty else log_probs.copy()
    scores -= word_penalty * steps
    # best first; a stable sort, so equal scores stay in the order they finished; empty slots last
    order = np.argsort(np.where(found, -scores, np.inf), axis=1, kind="stable")[:, :n_best]
    chosen = np.take_along_axis(found, order, 1)  # (sentences, n_best) a hypothesis there
    sentence, place = np.nonzero(chosen)
    at = order[sentence, place]  # the M hypotheses returned: their slot in the sentence's row
    group, slot = sentence * groups_per_sentence + at // k, at % k
    tokens = finished.tokens.numpy()[group, slot].tolist()  # (M, L)
    token_scores = finished.token_scores.numpy()[group, slot].tolist()
    picked = zip(sentence.tolist(), scores[sentence, at].tolist(), lengths[sentence, at].tolist(),
                 log_probs[sentence, at].tolist(), tokens, token_scores)
    results: list[list[Hypothesis]] = [[] for _ in range(lengths.shape[0])]
    for i, score, n, log_prob, row, row_scores in picked:
        results[i].append(Hypothesis(score, row[:n], log_prob, row_scores[:n + 1]))
    return [hyps or [Hypothesis(-math.inf, [], -math.inf, [])] for hyps in results]


def _launched(model, src, src_lens, *, k: int, samples: int, pick, n_best: int, max_len_a: float,
              max_len_b: int, min_len_a: float, min_len_b: int, length_penalty: float, word_penalty: float,
              no_repeat_ngram: int, cuda_graphs: bool, counts: Optional[Counts],
              encoded: Optional[Future] = None) -> Callable[[], list[list[Hypothesis]]]:
    """The search queued (its loop run, its results on their way to the host): call the result to read them."""
    src_lens = src_lens.cpu()  # the limits are computed on the host, then sent once
    limits = [lengths(src_lens, a, b).repeat_interleave(samples)
              for lengths, a, b in ((min_lengths, min_len_a, min_len_b), (max_lengths, max_len_a, max_len_b))]
    pending = loop.run(model, src, src_lens, k=k, samples=samples, pick=pick, min_len=limits[0], max_len=limits[1],
                       no_repeat_ngram=no_repeat_ngram, cuda_graphs=cuda_graphs, counts=counts, encoded=encoded)

    def read() -> list[list[Hypothesis]]:
        finished = pending.finished()
        if counts is not None:
            counts.live_row_steps += loop.live_row_steps(finished, limits[1])
        return collect(finished, groups_per_sentence=samples, n_best=n_best, length_penalty=length_penalty,
                       word_penalty=word_penalty)

    return read


def _searched(model, src, src_lens, **kwargs) -> list[list[Hypothesis]]:
    return _launched(model, src, src_lens, **kwargs)()


def _beam_pick(beam: int) -> Callable:
    """Beam search's pick: the 2K best extensions, or at beam 1 the best one's token (the K = 1
    loop takes a token; the best extension can differ from greedy's token only among equals)."""
    return best_extensions if beam > 1 else top_extension


def _sampling(temperature: float, top_k: int, top_p: float, generator: torch.Generator):
    return functools.partial(sampled_candidates, temperature=temperature, top_k=top_k, top_p=top_p,
                             generator=generator)


@torch.no_grad()
def greedy_search(model, src, src_lens, *, max_len_a: float, max_len_b: int, min_len_a: float = 0.0,
                  min_len_b: int = 0, length_penalty: float = 0.0, word_penalty: float = 0.0,
                  no_repeat_ngram: int = 0, cuda_graphs: bool = False,
                  counts: Optional[Counts] = None) -> list[Hypothesis]:
    """The most likely allowed token at every step; each sentence's hypothesis (tokens without EOS).

    At a sentence's length limit EOS is written in place of the best token, as beam search
    does, so beam 1 equals greedy (tokens and scores)."""
    found = _searched(model, src, src_lens, k=1, samples=1, pick=most_likely, n_best=1, max_len_a=max_len_a,
                      max_len_b=max_len_b, min_len_a=min_len_a, min_len_b=min_len_b, length_penalty=length_penalty,
                      word_penalty=word_penalty, no_repeat_ngram=no_repeat_ngram, cuda_graphs=cuda_graphs,
                      counts=counts)
    return [hyps[0] for hyps in found]


@torch.no_grad()
def beam_search(model, src, src_lens, *, beam: int, max_len_a: float, max_len_b: int, min_len_a: float = 0.0,
                min_len_b: int = 0, length_penalty: float = 0.0, word_penalty: float = 0.0, n_best: int = 1,
                no_repeat_ngram: int = 0, cuda_graphs: bool = False,
                counts: Optional[Counts] = None) -> list[list[Hypothesis]]:
    """The n_best finished hypotheses of each sentence, best first (the first `beam` to finish)."""
    return _searched(model, src, src_lens, k=beam, samples=1, pick=_beam_pick(beam), n_best=n_best,
                     max_len_a=max_len_a, max_len_b=max_len_b, min_len_a=min_len_a, min_len_b=min_len_b,
                     length_penalty=length_penalty, word_penalty=word_penalty, no_repeat_ngram=no_repeat_ngram,
                     cuda_graphs=cuda_graphs, counts=counts)


@torch.no_grad()
def sample_search(model, src, src_lens, *, n_samples: int, temperature: float, generator: torch.Generator,
                  max_len_a: float, max_len_b: int, top_k: int = 0, top_p: float = 1.0, n_best: int = 1,
                  min_len_a: float = 0.0, min_len_b: int = 0, length_penalty: float = 0.0,
                  word_penalty: float = 0.0, no_repeat_ngram: int = 0,
                  counts: Optional[Counts] = None) -> list[list[Hypothesis]]:
    """n_samples samples per sentence (temperature > 0; see nmt/decode/sampling.py); the n_best
    of them by rank score, best first. Not captured in CUDA graphs (the draws use `generator`)."""
    return _searched(model, src, src_lens, k=1, samples=n_samples, pick=_sampling(temperature, top_k, top_p, generator),
                     n_best=n_best, max_len_a=max_len_a, max_len_b=max_len_b, min_len_a=min_len_a,
                     min_len_b=min_len_b, length_penalty=length_penalty, word_penalty=word_penalty,
                     no_repeat_ngram=no_repeat_ngram, cuda_graphs=False, counts=counts)


@torch.no_grad()
def launch(model, src, src_lens, options: DecodeOptions, *, generator: Optional[torch.Generator] = None,
           counts: Optional[Counts] = None, encoded: Optional[Future] = None) -> Callable[[], list[list[Hypothesis]]]:
    """`search` queued: call the result for its hypotheses (the host waits for the device only then).
    `encoded`: the batch's encoder state, asked for beforehand (nmt/decode/ahead.py)."""
    rules = dict(max_len_a=options.max_len_a, max_len_b=options.max_len_b, min_len_a=options.min_len_a,
                 min_len_b=options.min_len_b, length_penalty=options.length_penalty,
                 word_penalty=options.word_penalty, no_repeat_ngram=options.no_repeat_ngram, counts=counts,
                 encoded=encoded)
    cuda_graphs = options.cuda_graphs and src.device.type == "cuda"
    if options.sample and options.temperature > 0:
        generator = generator if generator is not None else sampling_generator(options.seed, src.device)
        pick = _sampling(options.temperature, options.top_k, options.top_p, generator)
        return _launched(model, src, src_lens, k=1, samples=options.n_samples, pick=pick, n_best=options.n_best,
                         cuda_graphs=False, **rules)
    if options.sample or (options.beam == 1 and options.n_best == 1):  # greedy; temperature 0 samples are greedy
        found = _launched(model, src, src_lens, k=1, samples=1, pick=most_likely, n_best=1, cuda_graphs=cuda_graphs,
                          **rules)
        copies = options.n_best if options.sample else 1
        return lambda: [[dataclasses.replace(hyps[0]) for _ in range(copies)] for hyps in found()]
    return _launched(model, src, src_lens, k=options.beam, samples=1, pick=_beam_pick(options.beam),
                     n_best=options.n_best,
                     cuda_graphs=cuda_graphs, **rules)


@torch.no_grad()
def search(model, src, src_lens, options: DecodeOptions, *, generator: Optional[torch.Generator] = None,
           counts: Optional[Counts] = None) -> list[list[Hypothesis]]:
    """Each sentence's `options.n_best` hypotheses, best first: sampling when `options.sample`
    (temperature 0 is greedy), else greedy for beam 1 and beam search above. Sampling draws from
    `generator`, or from one seeded with `options.seed`. CUDA graphs only on CUDA, never for sampling."""
    return launch(model, src, src_lens, options, generator=generator, counts=counts)()


def search_batches(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   options: DecodeOptions | Sequence[DecodeOptions], *, generator: Optional[torch.Generator] = None,
                   counts: Optional[Counts] = None) -> Iterator[list[list[Hypothesis]]]:
    """`search` of each (src, src_lens) batch, in order (`options` for all, or one per batch), with
    the device kept busy between batches: each batch's search is queued before the results of the
    one before are read (the host reads them while the device works), and on CUDA the next batch's
    encoder runs in a worker thread while this batch is searched (nmt/decode/ahead.py)."""
    model = autocast_twin(model)  # refreshed once: the worker encodes with it while the search runs
    batches = iter(batches)
    head = list(itertools.islice(batches, 2))
    ahead = EncoderAhead(head[0][0].device) if len(head) == 2 and head[0][0].device.type == "cuda" else None

    def launched():
        encoded = None
        for i, (current, following) in enumerate(_with_next(itertools.chain(head, batches))):
            if ahead is not None and encoded is None:  # the first batch
                encoded = ahead.submit(model, *current)
            encoded_next = ahead.submit(model, *following) if ahead is not None and following is not None else None
            batch_options = options if isinstance(options, DecodeOptions) else options[i]
            yield launch(model, *current, batch_options, generator=generator, counts=counts, encoded=encoded)
            encoded = encoded_next

    try:
        yield from in_turn(launched())
    finally:
        if ahead is not None:
            ahead.close()


def _with_next(items: Iterable[T]) -> Iterator[tuple[T, Optional[T]]]:
    """(item, the item after it or None) for each item, drawing one item ahead."""
    items = iter(items)
    current = next(items, None)
    while current is not None:
        following = next(items, None)
        yield current, following
        current = following


def in_turn(launched: Iterable[Callable[[], T]]) -> Iterator[T]:
    """The results of queued searches, in order, each read once the next one is queued."""
    for queued, _ in _with_next(launched):  # drawing the next one launched it
        yield queued()
