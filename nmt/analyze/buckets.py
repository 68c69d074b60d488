"""Sorting test sentences into buckets: by source length, or by the average frequency rank of
their words (the paper's Figure 3). Pure functions over words; BLEU is computed in systems.py.

A bucket is given by its upper edge: with edges [5, 10] the buckets hold values v <= 5,
5 < v <= 10 and v > 10. Words are the source's white-space separated tokens, as a reader
counts them, not the model's subword pieces.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from typing import Sequence

from nmt.errors import NmtError

LENGTH_EDGES = [5, 10, 15, 20, 25, 30, 35, 40]  # 1-5, 6-10, ..., 36-40, 41+
FREQUENCY_BUCKETS = 8  # default count of equal-sized frequency buckets


def parse_edges(text: str, *, whole_numbers: bool, option: str = "--buckets") -> list[float]:
    """'5,10,20' -> [5.0, 10.0, 20.0]: positive, strictly increasing upper edges."""
    try:
        edges = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise NmtError(f"{option} {text!r} is not a list of numbers: write upper edges such as 5,10,20") from None
    if not edges or any(not math.isfinite(e) or e <= 0 for e in edges):
        raise NmtError(f"{option} {text!r}: give one or more positive upper edges, e.g. 5,10,20")
    if whole_numbers and any(e != math.floor(e) for e in edges):
        raise NmtError(f"{option} {text!r}: lengths are whole numbers of words; use edges such as 5,10,20")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise NmtError(f"{option} {text!r} must increase from left to right, e.g. 5,10,20")
    return edges


def assign(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """The bucket index of each value: 0 .. len(edges), the last for values above every edge."""
    return [bisect.bisect_left(edges, v) for v in values]


def _number(value: float) -> str:
    return f"{value:g}"


def labels(edges: Sequence[float], *, whole_numbers: bool) -> list[str]:
    """Names of the len(edges) + 1 buckets.

    Whole numbers (lengths): [5, 10] -> "1-5", "6-10", "11+".
    Real values (average ranks): [5, 10] -> "≤5", "5-10", ">10", each range open at the left.
    """
    if whole_numbers:
        lows = [1] + [math.floor(e) + 1 for e in edges]
        names = [f"{low}-{math.floor(high)}" if low < math.floor(high) else f"{low}"
                 for low, high in zip(lows, edges)]
        return names + [f"{lows[-1]}+"]
    names = [f"≤{_number(edges[0])}"] + [f"{_number(a)}-{_number(b)}" for a, b in zip(edges, edges[1:])]
    return names + [f">{_number(edges[-1])}"]


def quantile_edges(values: Sequence[float], buckets: int = FREQUENCY_BUCKETS) -> list[float]:
    """Upper edges that split `values` into about equally full buckets, rounded to 2 significant
    digits for readable labels (so the buckets are only roughly equal)."""
    ordered = sorted(values)
    if not ordered:
        return [1.0]
    edges = []
    for k in range(1, buckets):
        value = ordered[min(len(ordered) - 1, math.ceil(k * len(ordered) / buckets) - 1)]
        rounded = float(f"{value:.2g}")
        if rounded > 0 and (not edges or rounded > edges[-1]) and rounded < ordered[-1]:
            edges.append(rounded)
    return edges or [float(f"{ordered[-1]:.2g}")]


def word_ranks(train_lines: Sequence[str]) -> dict[str, int]:
    """Rank of every word of the training text: 1 = most frequent. Words of equal count are
    ranked in alphabetical order, so the ranks do not depend on the corpus's line order."""
    counts = Counter(word for line in train_lines for word in line.split())
    ordered = sorted(counts, key=lambda word: (-counts[word], word))
    return {word: rank for rank, word in enumerate(ordered, 1)}


def average_rank(sentence: str, ranks: dict[str, int]) -> float:
    """Mean rank of the sentence's words; a word the training text lacks gets len(ranks) + 1.
    An empty sentence has no average (NaN)."""
    words = sentence.split()
    if not words:
        return math.nan
    unseen = len(ranks) + 1
    return sum(ranks.get(word, unseen) for word in words) / len(words)


def lengths(sentences: Sequence[str]) -> list[int]:
    return [len(sentence.split()) for sentence in sentences]
