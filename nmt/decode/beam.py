"""The device-side search loop that greedy search, beam search and sampling share.

Every step runs on the device and only queues work: finished hypotheses go into preallocated
buffers, the length limits are device tensors, the step counter t is a device scalar, and the
host reads one number every CHECK_EVERY steps (how many groups are done) to stop and to drop done
groups from the batch. A group keeps its own K hypotheses: a sentence in beam search (K = beam)
and greedy search (K = 1), one sample of a sentence in sampling (K = 1).

One step (`advance`), for the n groups in the batch (n * K rows):
  1. log_probs (n*K, V) = decode_step(last tokens, state); what is not allowed gets -inf
     (`allowed`): EOS before the minimum length, a token that would repeat an n-gram of its
     hypothesis.
  2. `pick` proposes candidates per group, best first: in beam search (K > 1) the 2K best
     extensions (score, hypothesis, token), K of which can end in EOS, so K always continue; with
     K = 1 one token, the most likely or a sampled one. A group at its maximum length (which wins
     over the minimum) ends all its hypotheses with EOS instead (`only_eos_at_limit`).
  3. An EOS candidate among the first K leaves the beam and joins the group's finished set while
     it has fewer than K (`finish`: the paper's rule). The K best other candidates form the next
     beam (`first_non_eos`); their history rows are gathered and the new token written at column t.
     With K = 1 (`extended_one`) a row only ever extends itself: its history is written in place,
     and a group whose token is EOS is done.
  4. A group is done when it has K finished hypotheses or reaches its maximum length (where every
     hypothesis ends with EOS). The rule is K finished, with length normalisation too: a live
     hypothesis could still beat the worst finished one, but the old search stopped here as well
     and the results stay the same. A done group's scores become -inf: it finishes nothing more
     while it waits to leave the batch.
  5. Every CHECK_EVERY steps the host reads the number of done groups (`DoneCount`; on CUDA
     READ_LAG steps after asking, so the host does not wait for the device to drain): all done, the
     search stops; at least SHRINK_AT of the batch, they leave it (`keep_groups`, with the state's
     `reorder`), as dropping rows costs a copy of the state.

Shapes: n groups in the batch now (it shrinks), K hypotheses per group, G groups at the start,
L the longest length limit, V the vocabulary, W the candidates per group.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import Future
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, Optional

import torch

from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.decode.graphs import EagerSteps, autocast_twin, bucketed_slots, bucketed_width, for_model
from nmt.decode.topk import pruned_extensions, prunes, row_argmax
from nmt.device import device_to_host, host_to_device

CHECK_EVERY = 8  # steps between the host's reads of "how many groups are done?"
READ_LAG = 4  # on CUDA, steps between asking for that number and reading it (DoneCount)
SHRINK_AT = 0.25  # drop done groups once they are at least this fraction of the batch


@dataclass
class Beam:
    """The live hypotheses; row i*K + k is hypothesis k of slot i."""

    base: torch.Tensor  # (n,) long: the slot's group's first slot in Finished.write's flat index (group * (K+1))
    scores: torch.Tensor  # (n, K) float: log-probability of each live hypothesis; -inf: none
    history: torch.Tensor  # (n*K, L) long: the tokens so far, column t written at step t
    token_scores: torch.Tensor  # (n*K, L) float: the log-probability of each of those tokens
    prev: torch.Tensor  # (n*K,) long: the last token (BOS at the start)
    count: torch.Tensor  # (n,) long: the group's finished hypotheses so far
    done: torch.Tensor  # (n,) bool: the group needs no more steps
    last: torch.Tensor  # (n,) long: the step whose token must be EOS (maximum length - 1)
    eos_from: Optional[torch.Tensor]  # (n,) long: no EOS at steps before it; None: no minimum anywhere
    state: Any  # the model's state for the n*K rows, one memory row per slot

    ROW_FIELDS = ("history", "token_scores", "prev")  # indexed by row; the others (but state) by slot


@dataclass
class Finished:
    """Finished hypotheses by group, in the order they finished; slot K is a sink for the writes
    of candidates that do not finish (so that no step needs to know how many do)."""

    tokens: torch.Tensor  # (G, K+1, L) long: the first `length` are the hypothesis (no EOS)
    token_scores: torch.Tensor  # (G, K+1, L) float: per token, EOS's at column `length`
    log_prob: torch.Tensor  # (G, K+1) float: their sum, EOS included
    length: torch.Tensor  # (G, K+1) long: tokens before EOS; -1: an empty slot

    def write(self, where: torch.Tensor, tokens, token_scores, log_prob, length) -> None:
        """Hypotheses into slots: where (M,) indexes the flat (G*(K+1),) slots (Beam.base + slot);
        tokens, token_scores (M, L), log_prob, length (M,). Several writes into a sink slot: any
        one wins, and none is read."""
        flat = (self.tokens.flatten(0, 1), self.token_scores.flatten(0, 1), self.log_prob.view(-1),
                self.length.view(-1))
        for buffer, values in zip(flat, (tokens, token_scores, log_prob, length)):
            buffer.index_copy_(0, where, values)

    @classmethod
    def empty(cls, groups: int, k: int, length: int, device) -> "Finished":
        shape = (groups, k + 1)
        return cls(torch.zeros(*shape, length, dtype=torch.long, device=device),
                   torch.zeros(*shape, length, device=device), torch.zeros(shape, device=device),
                   torch.full(shape, -1, dtype=torch.long, device=device))


@dataclass
class Counts:
    """What a search did: decoder steps, and rows computed summed over the steps."""

    steps: int = 0
    row_steps: int = 0
    live_row_steps: int = 0  # of those, the rows of groups not done yet (`live_row_steps`): done ones wait to leave
    captures: int = 0  # search steps captured as CUDA graphs (each costs a recording, the first a warm-up step too)
    capture_seconds: float = 0.0  # the host's time in those captures


def live_row_steps(finished: Finished, max_len: torch.Tensor) -> int:
    """The row-steps a search's groups needed, from its results on the host: K rows for each step
    until the group was done, that is until its K-th hypothesis finished (at the step of its
    length), or else to its maximum length max_len (G,)."""
    k = finished.length.size(1) - 1
    lengths = finished.length[:, :k]
    done_at = torch.where((lengths >= 0).all(1), lengths.max(1).values + 1, max_len)
    return k * int(done_at.sum())


class Pending:
    """A search's finished hypotheses on their way to the host. On CUDA they are copied into
    page-locked memory behind the search's steps, and the host waits only when it reads them
    (`finished`): a caller can queue the next batch's search first (`search.search_batches`), so
    that the device works while the host reads this one. The copy also frees the static buffers
    of captured steps for the next search."""

    def __init__(self, finished: Finished):
        self.event = None
        if finished.tokens.device.type == "cuda":
            finished = replace(finished, **{f.name: device_to_host(getattr(finished, f.name)) for f in fields(finished)})
            self.event = torch.cuda.Event()
            self.event.record()
        self._finished = finished

    def finished(self) -> Finished:
        if self.event is not None:
            self.event.synchronize()
        return self._finished


def start(state, k: int, min_len: torch.Tensor, max_len: torch.Tensor, length: int,
          any_minimum: bool = True) -> Beam:
    """n groups of one live hypothesis (score 0) and K - 1 empty ones; min_len, max_len (n,).
    `any_minimum` False (no group has a minimum length) spares every step the EOS mask."""
    n, device = min_len.numel(), min_len.device
    scores = torch.zeros(n, k, device=device).masked_fill_(torch.arange(k, device=device) > 0, -math.inf)
    if k > 1:  # each sentence's K hypotheses share its memory row
        state = state.reorder(torch.arange(n, device=device).repeat_interleave(k))
    last = max_len - 1
    # EOS is too early at step t (t tokens so far) while t < min_len, unless the maximum wins (t = last)
    eos_from = torch.minimum(min_len, last) if any_minimum else None
    return Beam(base=torch.arange(0, n * (k + 1), k + 1, device=device), scores=scores,
                history=torch.full((n * k, length), PAD, dtype=torch.long, device=device),
                token_scores=torch.zeros(n * k, length, device=device),
                prev=torch.full((n * k,), BOS, dtype=torch.long, device=device),
                count=torch.zeros(n, dtype=torch.long, device=device),
                done=torch.zeros(n, dtype=torch.bool, device=device),
                last=last, eos_from=eos_from, state=state)


def repeated_ngrams(history: torch.Tensor, t: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, L) histories whose first t tokens are real -> (tokens, repeats), each (R, W) over the
    n-gram windows j of a row: the token that ended window j, and whether the row's last n-1
    tokens equal window j's first n-1 (so that this token next would repeat window j)."""
    windows = history.unfold(1, n, 1)  # (R, W = L-n+1, n): window j holds tokens j..j+n-1
    last = history.index_select(1, (t - (n - 1) + torch.arange(n - 1, device=t.device)).clamp(min=0))  # (R, n-1)
    complete = torch.arange(windows.size(1), device=t.device) + n - 1 < t  # (W,) windows within the first t tokens
    return windows[:, :, n - 1], (windows[:, :, :n - 1] == last.unsqueeze(1)).all(-1) & complete


def block_repeats(log_probs: torch.Tensor, history: torch.Tensor, t: torch.Tensor, n: int,
                  also: tuple = ()) -> torch.Tensor:
    """log_probs (R, V), in place, with -inf at each token that would repeat an n-gram of its row;
    the tensors in `also` (shaped like log_probs) the same."""
    if history.size(1) < n:
        return log_probs
    tokens, repeats = repeated_ngrams(history, t, n)
    # amin with +inf leaves a score as it is: a token seen in several windows needs no ordering
    blocked = torch.where(repeats, -math.inf, math.inf)
    for scores in (log_probs, *also):
        scores.scatter_reduce_(1, tokens, blocked.to(scores.dtype), reduce="amin")
    return log_probs


def allowed(log_probs: torch.Tensor, t: torch.Tensor, beam: Beam, no_repeat_ngram: int,
            also: tuple = ()) -> torch.Tensor:
    """Step 1, in place on log_probs (n, K, V) and the tensors in `also` (a ranking of the same
    shape): EOS at -inf where it is too early, and a token at -inf where it would repeat an
    n-gram. Only small writes, no pass over the whole tensor: the maximum length, where only EOS
    may come, is `only_eos_at_limit`'s, after the pick."""
    n, k, vocab = log_probs.shape
    if beam.eos_from is not None:
        too_short = (t < beam.eos_from).view(n, 1)
        for scores in (log_probs, *also):
            scores[:, :, EOS].masked_fill_(too_short, -math.inf)
    if no_repeat_ngram:
        block_repeats(log_probs.view(n * k, vocab), beam.history, t, no_repeat_ngram,
                      also=tuple(scores.view(n * k, vocab) for scores in also))
    return log_probs


def only_eos_at_limit(log_probs: torch.Tensor, scores: torch.Tensor, at_limit: torch.Tensor, first: tuple) -> tuple:
    """The candidates that may finish this step: `first` (score, hypothesis, token, token score),
    each (n, K), the first K picked; except in the groups out of room (at_limit (n,)), where every
    live hypothesis can only end: there each hypothesis + EOS, best first. (Such a group is done
    after this step, so what its other candidates continue with is never read.)"""
    eos = log_probs[:, :, EOS]  # (n, K)
    ended, order = (scores + eos).sort(dim=1, descending=True, stable=True)
    forced = (ended, order, EOS, eos.gather(1, order))
    at_limit = at_limit.view(-1, 1)
    return tuple(torch.where(at_limit, f, p) for f, p in zip(forced, first))


def best_extensions(log_probs: torch.Tensor, scores: torch.Tensor, ranking: Optional[torch.Tensor] = None):
    """Beam search's pick: the 2K best of the n groups' K*V extensions, best first.

    log_probs (n, K, V), scores (n, K) -> (candidate scores, source beam index, token), each
    (n, 2K). A hypothesis's score is the same for its whole row, so a group's 2K best extensions
    are among the 2K best tokens of each of its K rows: two small top-ks instead of adding the
    scores to all K*V log-probabilities first (a pass over the largest tensor of the step). With
    `ranking` (the bf16 logits, `ranking_of`) each row's best tokens are found in it, and their
    log-probabilities gathered. On CUDA, with thousands of tokens, the pick is pruned to a few
    windows of the scores instead (nmt/decode/topk.py): the same scores, in fewer passes.
    """
    n, k, vocab = log_probs.shape
    width = min(2 * k, k * vocab)
    if prunes(log_probs):
        return pruned_extensions(log_probs, scores, width, ranking)
    if ranking is None:
        per_row, token = log_probs.topk(min(width, vocab), dim=2)  # (n, K, w) each row's best, best first
    else:
        token = ranking.topk(min(width, vocab), dim=2).indices
        per_row = log_probs.gather(2, token)
    best, flat = (scores.unsqueeze(2) + per_row).view(n, -1).topk(width, dim=1)
    return best, flat // per_row.size(2), token.view(n, -1).gather(1, flat)


def top_extension(log_probs: torch.Tensor, scores: torch.Tensor, ranking: Optional[torch.Tensor] = None):
    """Beam search's pick at K = 1: the token (n, 1) of the best extension, as best_extensions ranks."""
    return best_extensions(log_probs, scores, ranking)[2][:, :1]


def most_likely(log_probs: torch.Tensor, scores: torch.Tensor, ranking: Optional[torch.Tensor] = None):
    """Greedy search's pick (K = 1): the most likely allowed token (n, 1), the first of equals."""
    return row_argmax((log_probs if ranking is None else ranking)[:, 0])


def first_non_eos(tokens: torch.Tensor, beam: int) -> torch.Tensor:
    """(N, 2K) candidate tokens -> (N, K) positions of the first K that are not EOS."""
    width = tokens.size(1)
    # EOS candidates are pushed behind all others; a stable sort keeps the score order.
    key = torch.arange(width, device=tokens.device).add(tokens == EOS, alpha=width)
    return key.argsort(dim=1)[:, :beam]


def written(buffer: torch.Tensor, t: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """values (R,) written in place into column t of buffer (R, L)."""
    return buffer.index_copy_(1, t.view(1), values.unsqueeze(1))


def finish(finished: Finished, beam: Beam, t: torch.Tensor, scores, rows, tokens, token_scores) -> torch.Tensor:
    """Step 3's first half: of the first K candidates (each (n, K)), those ending in EOS enter
    `finished` while their group has fewer than K. Returns the new counts (n,)."""
    n, k = scores.shape
    ends = (tokens == EOS) & (scores > -math.inf)
    slot = ends.cumsum(1).add_(beam.count.unsqueeze(1) - 1)  # (n, K) its place in the group's set
    slot = torch.where(ends, slot, k).clamp_(max=k)  # a group keeps the first K to finish; the others write into the sink
    where = (beam.base.unsqueeze(1) + slot).view(-1)
    rows = rows.reshape(-1)
    per_token = beam.token_scores.index_select(0, rows)  # (n*K, L)
    written(per_token, t, token_scores.reshape(-1))
    finished.write(where, beam.history.index_select(0, rows), per_token, scores.reshape(-1), t.expand(n * k))
    return (beam.count + ends.sum(1)).clamp_(max=k)


def ranking_of(logits: torch.Tensor) -> Optional[torch.Tensor]:
    """The tensor search ranks tokens in, besides the float32 log-probabilities: the logits when
    they are bf16 or float16 (a model under autocast), else None (rank the log-probabilities).

    Why: top-k over a row of 32k float32 values takes torch four radix passes over 4-byte keys;
    over the bf16 logits it takes two over 2-byte keys (at beam 12 of the paper's model on an
    H200, the float32 top-k was 0.61 ms of a 1.6 ms step). The order is the same: log_softmax
    subtracts one number per row, in float32, from float32 copies of the bf16 logits, so distinct
    logits stay distinct and equal ones equal (for the logits near a row's top, the ones ranked).
    """
    return logits if logits.dtype in (torch.bfloat16, torch.float16) else None


def advance(model, beam: Beam, finished: Finished, t: torch.Tensor, *, pick: Callable, no_repeat_ngram: int) -> Beam:
    """One step for every row (steps 1-4 of the module docstring); writes into `finished`."""
    if hasattr(model, "decode_scores"):  # a model that also hands out its logits (nmt/model/seq2seq.py)
        log_probs, logits, state = model.decode_scores(beam.prev, beam.state)  # (n*K, V) each
        ranking = ranking_of(logits)
    else:
        (log_probs, state), ranking = model.decode_step(beam.prev, beam.state), None
    extend = extended_one if beam.scores.size(1) == 1 else extended
    return extend(log_probs, state, beam, finished, t, pick=pick, no_repeat_ngram=no_repeat_ngram, ranking=ranking)


def extended(log_probs: torch.Tensor, state, beam: Beam, finished: Finished, t: torch.Tensor, *, pick: Callable,
             no_repeat_ngram: int, ranking: Optional[torch.Tensor] = None) -> Beam:
    """Steps 1-4 after the model's, for K > 1: the beam extended by the step's log_probs (n*K, V)
    and state; `ranking` (n*K, V), if given, orders each row's tokens as log_probs does (`ranking_of`)."""
    n, k = beam.scores.shape
    vocab = log_probs.size(1)
    ranked = () if ranking is None else (ranking.view(n, k, vocab),)  # what is not allowed is ranked last too
    log_probs = allowed(log_probs.view(n, k, vocab), t, beam, no_repeat_ngram, also=ranked)  # (n, K, V)
    cand_scores, cand_beams, cand_tokens = pick(log_probs, beam.scores, *ranked)  # (n, W) each
    cand_token_scores = log_probs.view(n, k * vocab).gather(1, cand_tokens.add(cand_beams, alpha=vocab))  # (n, W)
    at_limit = t >= beam.last  # (n,) out of room: only EOS
    first = only_eos_at_limit(log_probs, beam.scores, at_limit, (cand_scores[:, :k], cand_beams[:, :k],
                                                                 cand_tokens[:, :k], cand_token_scores[:, :k]))
    offsets = torch.arange(0, n * k, k, device=cand_beams.device).unsqueeze(1)  # (n, 1) each slot's first row
    count = finish(finished, beam, t, first[0], first[1] + offsets, first[2], first[3])
    keep = first_non_eos(cand_tokens, k)  # (n, K)
    rows = (cand_beams.gather(1, keep) + offsets).view(-1)  # (n*K,) the row each new hypothesis extends
    tokens = cand_tokens.gather(1, keep).view(-1)
    done = beam.done | (count >= k) | at_limit
    return replace(beam, scores=cand_scores.gather(1, keep).masked_fill_(done.unsqueeze(1), -math.inf),
                   history=written(beam.history.index_select(0, rows), t, tokens),
                   token_scores=written(beam.token_scores.index_select(0, rows), t,
                                        cand_token_scores.gather(1, keep).view(-1)),
                   prev=tokens, count=count, done=done, state=state.reorder(rows))


def extended_one(log_probs: torch.Tensor, state, beam: Beam, finished: Finished, t: torch.Tensor, *, pick: Callable,
                 no_repeat_ngram: int, ranking: Optional[torch.Tensor] = None) -> Beam:
    """`extended` for K = 1 (greedy search, sampling, beam 1), in fewer and smaller operations:
    each row extends itself, so its history and token scores are written in place, and a group
    finishes at most once, into its slot 0, when its token is EOS (then it is done)."""
    n, vocab = log_probs.shape
    ranked = () if ranking is None else (ranking.view(n, 1, vocab),)
    log_probs = allowed(log_probs.view(n, 1, vocab), t, beam, no_repeat_ngram, also=ranked)  # (n, 1, V)
    at_limit = t >= beam.last  # (n,) out of room: only EOS
    token = torch.where(at_limit, EOS, pick(log_probs, beam.scores, *ranked).view(n))
    token_score = log_probs.view(n, vocab).gather(1, token.unsqueeze(1)).view(n)
    score = beam.scores.view(n) + token_score
    written(beam.history, t, token)
    written(beam.token_scores, t, token_score)
    ends = (token == EOS) & (score > -math.inf)
    where = beam.base + ends.logical_not()  # slot 0, or the sink
    finished.write(where, beam.history, beam.token_scores, score, t.expand(n))
    done = beam.done | ends | at_limit
    return replace(beam, scores=score.masked_fill_(done, -math.inf).view(n, 1), prev=token, count=beam.count + ends,
                   done=done, state=state)


def keep_groups(beam: Beam, keep: torch.Tensor) -> Beam:
    """The beam without the slots not in `keep` (n',): their rows leave the batch and the state."""
    k = beam.scores.size(1)
    rows = (keep.unsqueeze(1) * k + torch.arange(k, device=keep.device)).view(-1)  # (n'*K,)
    kept = {f.name: value.index_select(0, rows if f.name in Beam.ROW_FIELDS else keep) if value is not None else None
            for f in fields(beam) if f.name != "state" for value in [getattr(beam, f.name)]}
    return Beam(**kept, state=beam.state.reorder(rows, keep))


class DoneCount:
    """How many groups of the beam are done, as the host learns it: asked for after a check's step
    (`ask`), read `lag` steps later (`known`). On the CPU the lag is 0. On CUDA the count is copied
    into page-locked memory behind the step and read READ_LAG steps later: by then the device has
    normally finished that step but still has the steps queued since, so it keeps working while the
    host decides to stop or to shrink the batch (read at once, the host waits for the queue to
    drain and then the device for the host). The price: a batch's end and its shrinks come
    READ_LAG steps late. Emulated on the CPU for a trained Multi30k model (1,000 test sentences,
    beam 1) that is 5% more row-steps at a lag of 1, 11% at 2, 21% at 4. On the H200 the lags from
    1 to 8 made no difference beyond the noise to that model's speed, and on newstest2014 with
    random weights the longer lags were faster, by up to 17% (benchmarks/README.md)."""

    def __init__(self, device: torch.device, lag: Optional[int] = None):
        """`lag`: READ_LAG on CUDA and 0 on the CPU unless given (scripts/benchmark_read_lag.py
        gives the CPU a lag, to count what one costs)."""
        self.cuda = device.type == "cuda"
        self.lag = lag if lag is not None else READ_LAG if self.cuda else 0
        self.host = torch.zeros((), dtype=torch.long, pin_memory=self.cuda)
        self.ready = torch.cuda.Event() if self.cuda else None
        self.asked_at: Optional[int] = None  # the step of the count asked for and not read yet

    def ask(self, beam: Beam, step: int) -> None:
        if self.asked_at is not None:  # the last one is not read yet (CHECK_EVERY <= lag): keep it
            return
        self.asked_at = step
        self.host.copy_(beam.done.sum(), non_blocking=self.cuda)  # on the CPU, the count now
        if self.cuda:
            self.ready.record()

    def known(self, step: int) -> Optional[int]:
        """From `lag` steps after an `ask`, once: a lower bound of the beam's done groups now (done
        stays done, and the beam has kept its slots since: only a read shrinks it); else None."""
        if self.asked_at is None or step < self.asked_at + self.lag:
            return None
        self.asked_at = None
        if self.cuda:
            self.ready.synchronize()  # READ_LAG steps ago: normally past, with later steps still queued
        return int(self.host)


def checked(beam: Beam, done: int, slots: Callable[[int], int] = lambda live: live) -> Optional[Beam]:
    """Step 5: None when all `done` (a lower bound of the beam's done groups), else the beam,
    without done groups if they are enough to pay for the copy. It keeps `slots(n - done)` slots,
    the live ones first (captured steps want few distinct sizes: done slots fill the rest); as
    `done` may lag, a few of those kept may be done as well."""
    n = beam.done.numel()
    if done == n:
        return None
    kept = min(n, slots(n - done))
    if kept > (1 - SHRINK_AT) * n:
        return beam
    keep = torch.argsort(beam.done.long(), stable=True)[:kept]  # the live slots, in order, then done ones
    return keep_groups(beam, keep)


def run(model, src, src_lens, *, k: int, samples: int, pick: Callable, min_len: torch.Tensor,
        max_len: torch.Tensor, no_repeat_ngram: int = 0, cuda_graphs: bool = False,
        counts: Optional[Counts] = None, encoded: Optional[Future] = None) -> "Pending":
    """Search `samples` groups of K hypotheses per sentence; min_len, max_len (G,) on the CPU.
    `encoded`: the encoder's state, already asked for (nmt/decode/ahead.py), else encoded here."""
    device = src.device
    model = autocast_twin(model)  # under autocast: the weights in bf16 once, not per step (nmt/decode/graphs.py)
    state = encoded.result().ready() if encoded is not None else model.encode(src, src_lens)
    if samples > 1:  # every sample is a group of its own, with its own copy of the memory
        state = state.select(torch.arange(src.size(0), device=device).repeat_interleave(samples))
    length = int(max_len.max())
    step = functools.partial(advance, model, pick=pick, no_repeat_ngram=no_repeat_ngram)
    groups = max_len.numel()

    def empty(width):
        return Finished.empty(groups, k, width, device), torch.zeros((), dtype=torch.long, device=device)

    if cuda_graphs:  # graphs kept between calls: shapes that repeat (nmt/decode/graphs.py)
        width, slots = bucketed_width(length), bucketed_slots
        state = state.padded_source(bucketed_width)
        steps = for_model(model, step, (pick, no_repeat_ngram), device)
        captures_before, capture_seconds_before = steps.captures, steps.capture_seconds
        finished, t = steps.static((groups, k, width), lambda: empty(width))
    else:
        width, slots, steps = length, (lambda live: live), EagerSteps(step)
        finished, t = empty(width)
    beam = start(state, k, host_to_device(min_len, device), host_to_device(max_len, device), width,
                 any_minimum=bool((min_len > 0).any()))
    done = DoneCount(device)
    try:
        for position in range(length):
            if counts is not None:
                counts.steps, counts.row_steps = counts.steps + 1, counts.row_steps + beam.prev.numel()
            beam = steps(beam, finished, t)
            if (position + 1) % CHECK_EVERY == 0:
                done.ask(beam, position + 1)
            count = done.known(position + 1)
            if count is not None and position + 1 < length:
                beam = checked(beam, count, slots)
                if beam is None:
                    break
    finally:
        if cuda_graphs:
            steps.step = None  # the kept graphs must not hold the model (graphs.for_model)
    if counts is not None and cuda_graphs:
        counts.captures += steps.captures - captures_before
        counts.capture_seconds += steps.capture_seconds - capture_seconds_before
    # The static buffers are the next call's: the results leave in copies, queued behind the steps.
    return Pending(finished)
