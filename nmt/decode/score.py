"""The model's log-probability of given translations: what rescoring an n-best list needs.

    scores = translator.score(["a source sentence"], ["its candidate translation"])
    scores[0].log_prob, scores[0].per_token

A candidate's score is log p(y_1 .. y_m, EOS | x), summed over its tokens and EOS, under the
model or, for an ensemble, the log of the members' mean probability at every position (as the
ensemble's search takes it); `per_token` divides it by m + 1. The search reports the same
number for its own output (`Translation.log_prob`), up to float rounding: here the decoder runs
over the whole candidate at once, teacher forcing, where the search steps through it.

Pairs are padded into batches of similar candidate length; a batch encodes each of its
distinct sources once (the candidates of an n-best list share theirs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import torch

from nmt.data.batching import pad
from nmt.data.tokenizer import BOS, EOS
from nmt.device import autocast
from nmt.errors import DataError

if TYPE_CHECKING:
    from nmt.decode.translate import Translator


@dataclass(frozen=True)
class Score:
    log_prob: float  # log p(candidate tokens and EOS | source), summed
    length: int  # the candidate's target tokens + 1 for EOS: what per_token divides by

    @property
    def per_token(self) -> float:
        return self.log_prob / self.length


def pair_batches(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                 batch_size: int) -> list[list[int]]:
    """Indices of the pairs with a non-empty source, cut into batches: longest candidate first
    (the decoder steps over a batch's longest), then by source, so that candidates of one source
    of equal length share a batch, which encodes the source once."""
    key = lambda i: (-len(tgt_ids[i]), -len(src_ids[i]), tuple(src_ids[i]))  # noqa: E731
    order = sorted((i for i, s in enumerate(src_ids) if len(s)), key=key)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def score_candidates(translator: "Translator", sources: Sequence[str], candidates: Sequence[str],
                     batch_size: Optional[int] = None) -> list[Score]:
    """The score of candidates[i] as a translation of sources[i], for every i.

    Text is taken as the model was trained on it (lowercased if its data was). An empty source
    has only the empty translation, scored 0 as translate reports it; any other candidate for
    it is an error.
    """
    if len(sources) != len(candidates):
        raise DataError(f"{len(sources)} sources but {len(candidates)} candidates: pair each candidate with its source")
    if translator.config.data.lowercase:
        sources, candidates = [s.lower() for s in sources], [c.lower() for c in candidates]
    src_ids, tgt_ids = translator.src_tokenizer.encode(sources), translator.tgt_tokenizer.encode(candidates)
    for number, (src, tgt) in enumerate(zip(src_ids, tgt_ids), 1):
        if not src and tgt:
            raise DataError(f"source {number} is empty but its candidate {candidates[number - 1]!r} is not: "
                            f"an empty source has only the empty translation")
    return score_ids(translator.model, src_ids, tgt_ids, device=translator.device, bf16=translator.config.train.bf16,
                     batch_size=batch_size or translator.config.decode.batch_size)


@torch.no_grad()
def score_ids(model, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], *,
              device: torch.device, bf16: bool = False, batch_size: int = 64) -> list[Score]:
    """Scores of token-id pairs (targets without BOS and EOS) under any model with `target_log_probs`."""
    def sums(state, tgt_in, tgt_out):
        return model.target_log_probs(state, tgt_in, tgt_out).sum(1).tolist()  # (B,)

    found = teacher_forced(model, src_ids, tgt_ids, sums, device=device, bf16=bf16, batch_size=batch_size)
    # An empty source has only the empty translation: 0, as translate reports it.
    return [Score(found.get(i, 0.0), len(tgt) + 1) for i, tgt in enumerate(tgt_ids)]


def teacher_forced(model, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]],
                   run: Callable[[object, torch.Tensor, torch.Tensor], Sequence], *, device: torch.device,
                   bf16: bool = False, batch_size: int = 64) -> dict[int, object]:
    """{i: run's result for pair i} for every pair with a non-empty source: the batching that
    scoring and attention (nmt/decode/attention.py) share.

    `run(state, tgt_in, tgt_out)` gets a batch of pairs: the model's encoded state with one row
    per target, and the targets padded (B, T) with BOS before (tgt_in) or EOS after (tgt_out);
    it returns one result per row, in the batch's order. It runs under the search's autocast.
    """
    found = {}
    for indices in pair_batches(src_ids, tgt_ids, batch_size):
        # Each distinct source is encoded once; its state is then selected for each of its
        # candidates, as the search selects it for each beam.
        position = {source: k for k, source in enumerate(dict.fromkeys(tuple(src_ids[i]) for i in indices))}
        sources = list(position)
        rows = torch.tensor([position[tuple(src_ids[i])] for i in indices], device=device)  # (B,) -> its source
        src = pad(sources).to(device)  # (U, S)
        targets = [tgt_ids[i] for i in indices]
        tgt_in, tgt_out = pad(targets, prefix=BOS).to(device), pad(targets, suffix=EOS).to(device)  # (B, T)
        with autocast(device, bf16):  # as the search runs: the same numerics
            state = model.encode(src, torch.tensor([len(s) for s in sources])).select(rows)
            found.update(zip(indices, run(state, tgt_in, tgt_out)))
    return found
