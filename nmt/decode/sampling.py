"""Sampling, the lecture's way of generating: draw the next token from the softmax, feed it back.

Each sample draws its next token from softmax(log_probs / temperature) restricted to the top_k
most likely tokens (0: all) and then to the top_p nucleus (1: all), in that order (temperature
first, as the Hugging Face and fairseq samplers do). A sample ends at EOS or at its length limit,
and is scored like a beam hypothesis: by its log-probability under the model itself (before the
temperature and the filters), token by token. Temperature 0 is greedy search (search() routes it
there); the draws come from one `torch.Generator`, so a seed gives the same samples whatever the
global random state.
"""

from __future__ import annotations

import torch

from nmt.data.tokenizer import EOS


def sampling_generator(seed: int, device: torch.device) -> torch.Generator:
    """The random stream of one translate call: samples depend on the seed (and on how the
    sentences are batched), never on the global random state."""
    return torch.Generator(device=device).manual_seed(seed)


def keep_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits (R, V) with -inf outside each row's k largest (exactly k, ties or not); 0: all."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, logits.topk(k, dim=-1).indices, True)
    return logits.masked_fill(~keep, float("-inf"))


def keep_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """logits (R, V) with -inf outside each row's nucleus: the most likely tokens whose
    probabilities reach p together, as few as can (always at least one); p >= 1: all."""
    if p >= 1:
        return logits
    ordered, order = logits.sort(dim=-1, descending=True)
    probs = ordered.softmax(-1)
    before = probs.cumsum(-1) - probs  # (R, V) the mass of the better tokens: the first has 0 < p
    drop = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, order, before >= p)
    return logits.masked_fill(drop, float("-inf"))


def sampled_candidates(log_probs: torch.Tensor, scores: torch.Tensor, ranking=None, *, temperature: float,
                       top_k: int, top_p: float, generator: torch.Generator):
    """Sampling's pick for the search loop (K = 1): log_probs (n, 1, V) as allowed -> the token
    drawn (n, 1); it draws from log_probs and has no use for the scores or a ranking
    (nmt/decode/beam.py's ranking_of). The loop scores the token by log_probs."""
    allowed = log_probs[:, 0]  # (n, V)
    filtered = keep_top_p(keep_top_k(allowed / temperature, top_k), top_p)
    # A row with nothing allowed (its hypothesis is dead) draws EOS, which log_probs scores -inf,
    # so that multinomial always sees a distribution.
    stuck = torch.isneginf(filtered).all(-1, keepdim=True)  # (n, 1)
    is_eos = torch.arange(filtered.size(-1), device=filtered.device) == EOS
    probs = filtered.masked_fill(stuck & is_eos, 0.0).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)  # (n, 1)
