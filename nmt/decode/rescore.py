"""`nmt score`: files in, the model's scores or a reranked n-best list out.

Outputs (to a file or stdout):
  --candidates FILE   one line per candidate: `log_prob<TAB>per_token`
  --nbest FILE        the n-best file, each line with one more field appended:
                      `index ||| hypothesis ||| scores [||| more] ||| log_prob per_token`
  --nbest --rerank    each source's best candidate under the weighted sum (nmt/decode/rerank.py),
                      one line per source, like `nmt translate` output
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from nmt.data.corpus import read_lines
from nmt.decode import rerank as reranking
from nmt.decode.nbest import NbestEntry, format_score, read_nbest
from nmt.decode.score import Score
from nmt.decode.translate import Translator
from nmt.errors import DataError
from nmt.files import write_atomically


@dataclass(frozen=True)
class RerankOptions:
    weights: Optional[tuple[float, ...]] = None  # None: the paper's average (or the start of tuning)
    per_token: bool = False  # combine the model's per-token log-probability instead of the sum
    tune_nbest: Optional[Path] = None  # a dev n-best list to tune the weights on ...
    tune_source: Optional[Path] = None  # ... its source lines
    tune_ref: Optional[Path] = None  # ... and references


def read_pairs(source_path: Path, candidates_path: Path) -> tuple[list[str], list[str]]:
    sources, candidates = read_lines(source_path, allow_empty=True), read_lines(candidates_path, allow_empty=True)
    if not candidates:
        raise DataError(f"{candidates_path} holds no candidates: it needs one candidate per line of {source_path}")
    if len(sources) != len(candidates):
        raise DataError(f"{source_path} has {len(sources)} lines but {candidates_path} has {len(candidates)}: "
                        f"line N of the candidates must translate line N of the source")
    for number, (source, candidate) in enumerate(zip(sources, candidates), 1):
        if not source and candidate:
            raise DataError(f"{source_path} line {number} is empty but {candidates_path} line {number} is not: "
                            f"an empty source has only the empty translation")
    return sources, candidates


def scored_nbest(translator: Translator, source_path: Path, nbest_path: Path,
                 batch_size: Optional[int]) -> tuple[list[list[NbestEntry]], list[list[Score]]]:
    """The n-best list, checked against its source, and the model's score of every entry."""
    sources = read_lines(source_path, allow_empty=True)
    groups = read_nbest(nbest_path, len(sources), str(source_path))
    for source, entries in zip(sources, groups):
        offered = [e for e in entries if e.hypothesis]
        if not source and offered:
            raise DataError(f"{source_path} line {entries[0].index + 1} is empty but {nbest_path} offers "
                            f"'{offered[0].hypothesis[:40]}' for it: an empty source has only the empty translation")
    flat = [(source, entry.hypothesis) for source, entries in zip(sources, groups) for entry in entries]
    scores = iter(translator.score([s for s, _ in flat], [c for _, c in flat], batch_size))
    return groups, [[next(scores) for _ in entries] for entries in groups]


def write_output(output: Optional[Path], lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(output, text)


def score_files(translator: Translator, source: Path, *, candidates: Optional[Path] = None,
                nbest: Optional[Path] = None, output: Optional[Path] = None, rerank: Optional[RerankOptions] = None,
                batch_size: Optional[int] = None) -> Optional[reranking.Tuned]:
    """What `nmt score` does: one of the three outputs above. Returns what tuning found, if asked."""
    if candidates is not None:
        score_candidates_file(translator, source, candidates, output, batch_size)
    elif rerank is None:
        score_nbest_file(translator, source, nbest, output, batch_size)
    else:
        return rerank_nbest_file(translator, source, nbest, output, rerank, batch_size)
    return None


def score_candidates_file(translator: Translator, source: Path, candidates: Path, output: Optional[Path],
                          batch_size: Optional[int] = None) -> None:
    scores = translator.score(*read_pairs(source, candidates), batch_size)
    write_output(output, [f"{s.log_prob:.6f}\t{s.per_token:.6f}" for s in scores])


def score_nbest_file(translator: Translator, source: Path, nbest: Path, output: Optional[Path],
                     batch_size: Optional[int] = None) -> None:
    groups, scores = scored_nbest(translator, source, nbest, batch_size)
    write_output(output, [entry.line(format_score(s.log_prob, s.per_token))
                          for entries, row in zip(groups, scores) for entry, s in zip(entries, row)])


def rerank_nbest_file(translator: Translator, source: Path, nbest: Path, output: Optional[Path],
                      options: RerankOptions, batch_size: Optional[int] = None) -> Optional[reranking.Tuned]:
    """Write each source's best candidate; returns what tuning found, if it was asked for."""
    groups, scores = scored_nbest(translator, source, nbest, batch_size)
    features = len(groups[0][0].features)
    tuned = None
    if options.tune_nbest is not None:
        tuned = tune(translator, options, features, str(nbest), batch_size)
        weights = tuned.weights
    elif options.weights is not None:
        weights = reranking.check_weights(options.weights, features, str(nbest))
    else:
        weights = reranking.default_weights(features, str(nbest))
    best = reranking.rerank(groups, model_values(scores, options.per_token), weights)
    write_output(output, [entry.hypothesis for entry in best])
    return tuned


def tune(translator: Translator, options: RerankOptions, features: int, test_name: str,
         batch_size: Optional[int]) -> reranking.Tuned:
    groups, scores = scored_nbest(translator, options.tune_source, options.tune_nbest, batch_size)
    if len(groups[0][0].features) != features:
        raise DataError(f"{options.tune_nbest} has {len(groups[0][0].features)} scores per line but {test_name} "
                        f"has {features}: tune on a dev list of the same system")
    references = read_lines(options.tune_ref, allow_empty=True)
    if len(references) != len(groups):
        raise DataError(f"{options.tune_ref} has {len(references)} lines but {options.tune_nbest} has candidates for "
                        f"{len(groups)} sources: the references must match the dev source line for line")
    if options.weights is not None:
        start = reranking.check_weights(options.weights, features, str(options.tune_nbest))
    else:  # the paper's average; several features start equal
        start = (0.5, 0.5) if features == 1 else (1.0,) * (1 + features)
    return reranking.tune_weights(groups, model_values(scores, options.per_token), references, start)


def model_values(scores: list[list[Score]], per_token: bool) -> list[list[float]]:
    return [[s.per_token if per_token else s.log_prob for s in row] for row in scores]
