"""The beam and greedy search of commit 6ebd0aa, kept unchanged as the oracle for today's search.

This is the host-driven implementation that nmt/decode/search.py replaced (Python lists of
finished hypotheses, a `.tolist()` and a `torch.tensor(list)` per step, the history re-concatenated
at every step, the state re-selected at every step). It is known to agree with an unbatched
one-sentence-at-a-time reference (tests/test_search.py::reference_beam), so the device-side search
must reproduce its hypotheses and scores exactly (tests/test_search_equivalence.py).
Do not "improve" it: its value is that it is the old code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from nmt.data.tokenizer import BOS, EOS


@dataclass(order=True)
class Hypothesis:
    rank_score: float  # the score search ranks by: log-probability / length**alpha
    tokens: list[int] = field(compare=False)  # without BOS and EOS
    log_prob: float = field(compare=False)  # sum of the log-probabilities, EOS included


def max_lengths(src_lens: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """Most output tokens (EOS included) allowed per sentence: a * source length + b, at least 1."""
    return (src_lens.double() * a + b).floor().clamp(min=1).long()


def length_normalize(log_prob: float, length: int, alpha: float) -> float:
    return log_prob / (length ** alpha) if alpha else log_prob


@torch.no_grad()
def greedy_search(model, src, src_lens, *, max_len_a: float = 2.0, max_len_b: int = 10,
                  length_penalty: float = 0.0) -> list[Hypothesis]:
    """The most likely next token at every step; each sentence's hypothesis (tokens without EOS).

    At a sentence's length limit EOS is written in place of the best token, as beam search
    does, so beam 1 equals greedy exactly (tokens and scores)."""
    limits = max_lengths(src_lens, max_len_a, max_len_b).to(src.device)
    state = model.encode(src, src_lens)
    prev = torch.full((src.size(0),), BOS, dtype=torch.long, device=src.device)
    finished = torch.zeros_like(prev, dtype=torch.bool)
    log_prob = torch.zeros(src.size(0), dtype=torch.float32, device=src.device)
    steps = []
    for t in range(int(limits.max())):
        log_probs, state = model.decode_step(prev, state)
        # At its length limit a sentence must end, as in beam search.
        prev = torch.where(t + 1 >= limits, EOS, log_probs.argmax(-1))
        log_prob += torch.where(finished, 0.0, log_probs.gather(1, prev.unsqueeze(1)).squeeze(1))
        steps.append(torch.where(finished, EOS, prev))
        finished |= prev == EOS
        if bool(finished.all()):
            break
    tokens = torch.stack(steps, 1).tolist()  # (B, T), every row holds an EOS
    hypotheses = []
    for row, score in zip(tokens, log_prob.tolist()):
        row = row[:row.index(EOS)]
        hypotheses.append(Hypothesis(length_normalize(score, len(row) + 1, length_penalty), row, score))
    return hypotheses


def top_candidates(scores: torch.Tensor, beam: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """scores (N, K, V) running score of every extension -> the 2K best per sentence.

    Returns (candidate scores, source beam index, token), each (N, 2K), best first.
    """
    n, k, vocab = scores.shape
    best, flat_index = scores.view(n, k * vocab).topk(min(2 * beam, k * vocab), dim=1)
    return best, flat_index // vocab, flat_index % vocab


def first_non_eos(tokens: torch.Tensor, beam: int) -> torch.Tensor:
    """(N, 2K) candidate tokens -> (N, K) positions of the first K that are not EOS."""
    width = tokens.size(1)
    # EOS candidates are pushed behind all others; a stable sort keeps the score order.
    key = (tokens == EOS).long() * width + torch.arange(width, device=tokens.device)
    return key.argsort(dim=1)[:, :beam]


@torch.no_grad()
def beam_search(model, src, src_lens, *, beam: int, max_len_a: float = 2.0, max_len_b: int = 10,
                length_penalty: float = 0.0, n_best: int = 1) -> list[list[Hypothesis]]:
    """The n_best finished hypotheses of each sentence, best first."""
    device, num_sentences = src.device, src.size(0)
    limits = max_lengths(src_lens, max_len_a, max_len_b).tolist()
    finished: list[list[Hypothesis]] = [[] for _ in range(num_sentences)]

    state = model.encode(src, src_lens).select(torch.arange(num_sentences, device=device).repeat_interleave(beam))
    active = list(range(num_sentences))  # sentence ids still in the batch, in row order
    scores = torch.full((num_sentences, beam), -math.inf, device=device)  # (N, K) running log-probs
    scores[:, 0] = 0.0  # one live hypothesis at the start
    history = torch.full((num_sentences, beam, 0), BOS, dtype=torch.long, device=device)  # (N, K, t)
    prev = torch.full((num_sentences * beam,), BOS, dtype=torch.long, device=device)

    for t in range(max(limits)):
        log_probs, state = model.decode_step(prev, state)  # (N*K, V)
        n = len(active)
        candidates = scores.unsqueeze(2) + log_probs.view(n, beam, -1)  # (N, K, V)
        at_limit = torch.tensor([t + 1 >= limits[s] for s in active], device=device)
        if bool(at_limit.any()):  # out of room: every hypothesis must end here
            forced = torch.full_like(candidates, -math.inf)
            forced[..., EOS] = candidates[..., EOS]
            candidates = torch.where(at_limit.view(n, 1, 1), forced, candidates)
        cand_scores, cand_beams, cand_tokens = top_candidates(candidates, beam)  # (N, 2K)

        # Step 3a: EOS among the first K candidates finishes a hypothesis.
        eos_rows, eos_ranks = torch.nonzero((cand_tokens[:, :beam] == EOS) & (cand_scores[:, :beam] > -math.inf),
                                            as_tuple=True)
        for row, rank in zip(eos_rows.tolist(), eos_ranks.tolist()):
            sentence = active[row]
            if len(finished[sentence]) < beam:
                tokens = history[row, cand_beams[row, rank]].tolist()
                log_prob = float(cand_scores[row, rank])
                finished[sentence].append(Hypothesis(length_normalize(log_prob, len(tokens) + 1, length_penalty),
                                                     tokens, log_prob))

        # Step 3b: the K best non-EOS candidates continue.
        keep = first_non_eos(cand_tokens, beam)  # (N, K)
        scores = cand_scores.gather(1, keep)
        source_beams = cand_beams.gather(1, keep)
        next_tokens = cand_tokens.gather(1, keep)
        history = torch.cat([history.gather(1, source_beams.unsqueeze(2).expand_as(history)),
                             next_tokens.unsqueeze(2)], dim=2)

        # Step 4: drop sentences that are done; reorder the state to follow the kept beams.
        still = [row for row, s in enumerate(active) if len(finished[s]) < beam and t + 1 < limits[s]]
        if not still:
            break
        rows = torch.tensor(still, device=device)
        active = [active[row] for row in still]
        scores, history, source_beams, next_tokens = scores[rows], history[rows], source_beams[rows], next_tokens[rows]
        state = state.select((rows.unsqueeze(1) * beam + source_beams).view(-1))
        prev = next_tokens.view(-1)

    return [sorted(hyps, reverse=True)[:n_best] for hyps in finished]
