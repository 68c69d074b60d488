"""The search's pick on CUDA, pruned: each group's best extensions, or each row's best token,
found in a few windows of the scores instead of all of them.

A search step ranks every row's V token scores: beam search takes each group's 2K best
extensions (nmt/decode/beam.py's best_extensions: the 2K best tokens of each of its K rows, by a
top-k per row, then the 2K best of those), greedy search each row's best token (argmax). On CUDA
torch's top-k over rows of thousands of values is a radix select, about ten kernels that read the
data once per digit, and its argmax a reduction that is slow for a hundred rows of a few thousand.

Pruning: cut each row into windows of w values and take each window's maximum (one max-pool pass
over the scores). A (row, window) pair's best extension is the row's hypothesis score plus that
maximum. The W pairs of a group with the best of those hold the group's W best extensions: every
extension better than the W-th best, x, lies in a pair whose best beats x, and there are fewer
than W such pairs, so all are kept; each other kept pair holds an extension equal to x, or, when
fewer than W pairs reach x, every extension equal to x is kept. So the top W of the kept pairs'
W x w extensions has the scores of the unpruned pick exactly; among extensions of equal score at
the W-th place the ones returned may differ (torch's top-k leaves that choice unspecified too).
The argmax keeps torch's rule, the first of equal maxima: max-pool returns a window's first
maximum, and argmax the first of equal windows.

Measured in CUDA graphs on an H200 by scripts/benchmark_pick.py (results/decode/pick-8fba398-h200.json,
benchmarks/README.md), 128 sentences, microseconds per pick:

    beam x V            unpruned   pruned        argmax, 128 x V     torch   pruned
    5 x 6,000             101.5     77.1          6,000               21.2    10.8
    12 x 6,000            147.0    109.7          8,000               27.3    10.9
    5 x 32,000            260.1    130.9          12,000 (torch's)     6.2    13.6
    12 x 32,000           455.0    212.9          32,000 (torch's)     9.9    19.4

On the CPU torch's own operators stay: its top-k is already a partial sort.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

PRUNED_ON = ("cuda",)  # device types the pruned forms run on (the tests add "cpu")
MIN_VOCAB = 1024  # fewer: little to gain (at 1,000 tokens the pruned pick was 1.03-1.05x torch's)
ARGMAX_VOCAB = (4000, 8192)  # pruned argmax for V in this range: torch's argmax was faster at 2,000 and from 12,000 on


@functools.lru_cache(maxsize=None)
def window_for(vocab: int) -> int:
    """The window width: a divisor of V from 32 to 50, the nearest to 40 (no short last window),
    else 40. Swept from 16 to 250 on the search's shapes at 1,000 to 32,000 tokens, 40 was the
    fastest or within 5% of it everywhere; 64 and 125 were up to 1.7x slower at 32,000
    (`results/decode/pick-sweep-83e055c-h200.json`)."""
    return next((w for w in sorted(range(32, 51), key=lambda w: (abs(w - 40), w)) if vocab % w == 0), 40)


def prunes(log_probs: torch.Tensor) -> bool:
    """Whether beam search's pick over these (n, K, V) scores is pruned."""
    return log_probs.device.type in PRUNED_ON and log_probs.size(-1) >= MIN_VOCAB


def prunes_argmax(x: torch.Tensor) -> bool:
    low, high = ARGMAX_VOCAB
    return x.device.type in PRUNED_ON and low <= x.size(-1) <= high


def row_argmax(x: torch.Tensor) -> torch.Tensor:
    """x (R, V) -> (R, 1) the position of each row's largest value, the first of equals (x.argmax)."""
    return pruned_argmax(x) if prunes_argmax(x) else x.argmax(-1, keepdim=True)


def _window_maxima(rows: torch.Tensor, w: int, indices: bool = False):
    """rows (R, V) -> each window's maximum (R, C), C = ceil(V / w); with `indices`, also where in the row it is."""
    found = F.max_pool1d(rows.unsqueeze(1), w, w, ceil_mode=True, return_indices=indices)
    return tuple(t.squeeze(1) for t in found) if indices else found.squeeze(1)


def pruned_extensions(log_probs: torch.Tensor, scores: torch.Tensor, width: int,
                      ranking: torch.Tensor | None = None, window: int = 0):
    """Beam search's pick (beam.best_extensions), pruned: log_probs (n, K, V), scores (n, K) ->
    each group's `width` best extensions, best first, as (score, row in the group, token), each
    (n, width). `window`: the width of a window (0: window_for(V)). With `ranking` (n, K, V),
    each row's tokens in the order of its log_probs (beam.ranking_of), the windows' maxima are
    found in it, and their log-probabilities gathered."""
    n, k, vocab = log_probs.shape
    w = window or window_for(vocab)
    flat = log_probs.view(n * k, vocab)
    if ranking is None:
        maxima = _window_maxima(flat, w)  # (n*K, C)
    else:
        maxima = flat.gather(1, _window_maxima(ranking.reshape(n * k, vocab), w, indices=True)[1])
    windows = maxima.size(1)
    if k * windows <= width:  # too few pairs to prune: every extension, ranked
        best, at = (scores.unsqueeze(2) + log_probs).view(n, -1).topk(width, dim=1)
        return best, at // vocab, at % vocab
    pairs = (scores.view(n * k, 1) + maxima).view(n, k * windows).topk(width, dim=1, sorted=False).indices
    row = pairs // windows  # (n, W): each kept pair's row in the group, and below its tokens
    cols = torch.add(torch.arange(w, device=flat.device), (pairs % windows).unsqueeze(2), alpha=w)  # (n, W, w)
    short = vocab % w != 0
    if short:  # the last window's missing places: read the last token, then rank them last
        outside = cols >= vocab
        cols = cols.clamp_(max=vocab - 1)
    values = log_probs.view(n, k * vocab).gather(1, torch.add(cols, row.unsqueeze(2), alpha=vocab).view(n, -1))
    if short:
        values = values.masked_fill_(outside.view(n, -1), -math.inf)
    candidates = scores.gather(1, row).unsqueeze(2) + values.view(n, width, w)  # the unpruned pick's sums
    best, at = candidates.view(n, -1).topk(width, dim=1)
    return best, row.gather(1, at // w), cols.view(n, -1).gather(1, at)


def pruned_argmax(x: torch.Tensor, window: int = 32) -> torch.Tensor:
    """row_argmax through each window's maximum and where it is: x (R, V) -> (R, 1)."""
    maxima, where = _window_maxima(x, window, indices=True)  # (R, C) each
    return where.gather(1, maxima.argmax(1, keepdim=True))
