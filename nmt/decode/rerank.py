"""Reranking n-best lists: a weighted sum of the model's score and the list's own scores.

The paper rescored an SMT system's 1000-best lists by the average of the LSTM's log-probability
and the SMT score: weights (0.5, 0.5) on (model, n-best score), the default here for a list with
one score per line. A candidate's combined score is
    w_0 * model score + w_1 * feature_1 + ... + w_F * feature_F
with the features of its n-best line (nmt/decode/nbest.py); each source keeps its best
candidate, the first one in the list on a tie. `tune_weights` picks the weights on a dev set by
coordinate search over a grid, maximising sacreBLEU of the reranked 1-best.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from nmt.decode.nbest import NbestEntry
from nmt.errors import DataError
from nmt.evaluate import score as bleu_scores

# The values each weight tries, -1.0 .. 1.0, the smallest in size first and positive before negative:
# of equally good weights the search keeps the first, so the simplest.
GRID = tuple(sorted((round(0.1 * k, 1) for k in range(-10, 11)), key=lambda value: (abs(value), -value)))


def parse_weights(text: str) -> tuple[float, ...]:
    """'0.5,0.5' -> (0.5, 0.5): the model's weight first, then one per n-best feature."""
    try:
        weights = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise DataError(f"--weights '{text}' is not a comma-separated list of numbers: "
                        f"give the model's weight, then one per n-best score, e.g. 0.5,0.5") from None
    if len(weights) < 2:
        raise DataError(f"--weights '{text}' needs the model's weight and at least one for the n-best scores, "
                        f"e.g. 0.5,0.5")
    return weights


def check_weights(weights: tuple[float, ...], features: int, source: str) -> tuple[float, ...]:
    if len(weights) != 1 + features:
        raise DataError(f"{len(weights)} weights for {source}, whose lines have {features} score(s): give "
                        f"{1 + features} (the model's first, then one per score)")
    return weights


def default_weights(features: int, source: str) -> tuple[float, ...]:
    """The paper's average of the model's and the list's score; a list of several features has no default."""
    if features != 1:
        raise DataError(f"{source} has {features} scores per line: give --weights with {1 + features} numbers "
                        f"(the model's first) or tune them with --tune-on")
    return (0.5, 0.5)


def combined(model_score: float, entry: NbestEntry, weights: Sequence[float]) -> float:
    return weights[0] * model_score + sum(w * f for w, f in zip(weights[1:], entry.features))


def best_positions(groups: Sequence[Sequence[NbestEntry]], model_scores: Sequence[Sequence[float]],
                   weights: Sequence[float]) -> tuple[int, ...]:
    """Each source's best candidate, as its position in the source's list (the first on a tie)."""
    positions = []
    for entries, scores in zip(groups, model_scores):
        values = [combined(s, e, weights) for e, s in zip(entries, scores)]
        positions.append(values.index(max(values)))
    return tuple(positions)


def rerank(groups: Sequence[Sequence[NbestEntry]], model_scores: Sequence[Sequence[float]],
           weights: Sequence[float]) -> list[NbestEntry]:
    """The best entry of every source under `weights`."""
    return [entries[p] for entries, p in zip(groups, best_positions(groups, model_scores, weights))]


@dataclass(frozen=True)
class Tuned:
    weights: tuple[float, ...]
    bleu: float  # dev BLEU of the reranked 1-best with these weights
    start_bleu: float  # and with the weights the search started from

    def describe(self) -> str:
        names = ["model"] + [f"n-best score {k}" for k in range(1, len(self.weights))]
        if len(self.weights) == 2:
            names[1] = "n-best score"
        shown = ", ".join(f"{name} {w:g}" for name, w in zip(names, self.weights))
        return f"tuned weights: {shown} (dev BLEU {self.bleu:.2f}; {self.start_bleu:.2f} with the starting weights)"


def tune_weights(groups: Sequence[Sequence[NbestEntry]], model_scores: Sequence[Sequence[float]],
                 references: Sequence[str], start: Sequence[float], grid: Sequence[float] = GRID,
                 rounds: int = 5) -> Tuned:
    """Coordinate search: set each weight in turn to the grid value with the best dev BLEU (a
    value replaces the current one only if strictly better), until a round changes nothing."""
    if len(references) != len(groups):
        raise DataError(f"{len(references)} references for an n-best list of {len(groups)} sources: "
                        f"they must match line for line")
    cache: dict[tuple[int, ...], float] = {}  # many weights choose the same candidates

    def bleu(weights) -> float:
        chosen = best_positions(groups, model_scores, weights)
        if chosen not in cache:
            hypotheses = [entries[p].hypothesis for entries, p in zip(groups, chosen)]
            cache[chosen] = bleu_scores(hypotheses, list(references)).bleu
        return cache[chosen]

    best_weights = tuple(start)
    start_bleu = best = bleu(best_weights)
    for _ in range(rounds):
        improved = False
        for k in range(len(best_weights)):
            for value in grid:
                trial = best_weights[:k] + (value,) + best_weights[k + 1:]
                if (found := bleu(trial)) > best:
                    best_weights, best, improved = trial, found, True
        if not improved:
            break
    return Tuned(best_weights, best, start_bleu)
