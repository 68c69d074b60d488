"""The search's per-row pick on CUDA: each row's k best tokens, or its best one, in fewer passes.

A search step ranks every row's V token scores: beam search takes each row's 2K best
(`row_topk`), greedy search the best (`row_argmax`). On CUDA torch's topk over rows of thousands
runs a radix select, about ten kernels that pass over the data once per 8-bit digit, and its
argmax a reduction tuned badly for a hundred rows of a few thousand. Measured in CUDA graphs on an
H200 (`scripts/benchmark_pick.py`, benchmarks/README.md "The search's pick"):

    rows x V, k              torch      pruned
    640 x 6,000, 10           76 µs      53 µs   (the Multi30k model at beam 5)
    1,536 x 6,000, 24        107 µs     115 µs   (beam 12: torch's kept, see MIN_VOCAB_PER_K)
    640 x 32,000, 10         228 µs     102 µs   (the paper's model at beam 5)
    1,536 x 32,000, 24       425 µs     201 µs   (at beam 12)
    argmax 128 x 6,000        21 µs      11 µs
    argmax 128 x 32,000       10 µs      20 µs   (torch's kept, see ARGMAX_VOCAB)

Pruning: cut a row into windows of w values, take each window's maximum (one max-pool pass over
the row), keep the k windows with the largest maxima, and take the top k of their k * w values.
Those windows hold a top k of the row: every value above the k-th largest, v, sits in a window
whose maximum beats v, and there are fewer than k such windows, so all are kept; the other kept
windows each hold a value equal to v or, when fewer than k windows reach v, every value equal to
v is kept. So the values are torch.topk's exactly; among equal values at the k-th place the
positions may differ (torch leaves that choice unspecified too). The argmax keeps torch's rule,
the first of equal maxima: max-pool returns a window's first maximum, argmax the first window.

On the CPU torch's own operators are kept: its topk is a partial sort, already one pass.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

PRUNED_ON = ("cuda",)  # device types the pruned forms run on (tests add "cpu")
MIN_VOCAB_PER_K = 400  # row_topk prunes when V >= this x k (at 1,536 x 6,000, k = 24, V/k = 250, it lost)
ARGMAX_VOCAB = (1024, 16384)  # row_argmax prunes for V in this range (torch's argmax won at 32,000)


@functools.lru_cache(maxsize=None)
def window_for(vocab: int) -> int:
    """The window width: a divisor of V from 16 to 64, the nearest to 32 (no ragged last window),
    else 32. (25 to 50 were the fastest widths measured at both vocabulary sizes.)"""
    return next((w for w in sorted(range(16, 65), key=lambda w: (abs(w - 32), w)) if vocab % w == 0), 32)


def prunes_topk(x: torch.Tensor, k: int) -> bool:
    return x.device.type in PRUNED_ON and x.size(-1) >= MIN_VOCAB_PER_K * k


def row_topk(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of each row's k largest, best first, like x.topk(k, dim=-1)."""
    return pruned_topk(x, k) if prunes_topk(x, k) else x.topk(k, dim=-1)


def prunes_argmax(x: torch.Tensor) -> bool:
    low, high = ARGMAX_VOCAB
    return x.device.type in PRUNED_ON and low <= x.size(-1) <= high


def row_argmax(x: torch.Tensor) -> torch.Tensor:
    """x (R, V) -> (R, 1) the position of each row's largest value, the first of equals (x.argmax)."""
    return pruned_argmax(x) if prunes_argmax(x) else x.argmax(-1, keepdim=True)


def _window_maxima(rows: torch.Tensor, w: int, indices: bool = False):
    """rows (R, V) -> each window's maximum (R, C), C = ceil(V / w), and with `indices` where in the row it is."""
    found = F.max_pool1d(rows.unsqueeze(1), w, w, ceil_mode=True, return_indices=indices)
    return tuple(t.squeeze(1) for t in found) if indices else found.squeeze(1)


def pruned_topk(x: torch.Tensor, k: int, window: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """row_topk by pruning to the k windows of `window` values (0: window_for(V)) with the largest maxima."""
    vocab = x.size(-1)
    w = window or window_for(vocab)
    rows = x.reshape(-1, vocab)
    maxima = _window_maxima(rows, w)  # (R, C)
    if maxima.size(1) <= k:  # nothing to prune
        return x.topk(k, dim=-1)
    windows = maxima.topk(k, dim=1, sorted=False).indices  # (R, k)
    cols = torch.add(torch.arange(w, device=x.device), windows.unsqueeze(2), alpha=w).view(rows.size(0), k * w)
    if vocab % w:  # the last window is short: its missing places point at the last value, ranked last
        outside = cols >= vocab
        values = rows.gather(1, cols.clamp_(max=vocab - 1)).masked_fill_(outside, -math.inf)
    else:
        values = rows.gather(1, cols)
    best, at = values.topk(k, dim=1)
    shape = (*x.shape[:-1], k)
    return best.view(shape), cols.gather(1, at).view(shape)


def pruned_argmax(x: torch.Tensor, window: int = 32) -> torch.Tensor:
    """row_argmax through each window's maximum and where it is: x (R, V) -> (R, 1)."""
    maxima, where = _window_maxima(x, window, indices=True)  # (R, C) each
    return where.gather(1, maxima.argmax(1, keepdim=True))
