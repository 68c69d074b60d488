"""BLEU of one or more systems on one test set per bucket of source sentences (the paper's
Figure 3), and whether each system differs from the first (sacreBLEU's paired bootstrap test).

Every score is sacreBLEU's corpus BLEU of the bucket's sentences (nmt.evaluate.score), not a
mean of sentence scores; the bootstrap test is sacreBLEU's own (`sacrebleu.significance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from nmt.analyze import buckets
from nmt.analyze.outputs import record, write_csv, write_json
from nmt.analyze.plots import add_legend, new_figure, save
from nmt.data.corpus import read_lines
from nmt.errors import DataError, NmtError
from nmt.evaluate import score


@dataclass
class TestSet:
    src: list[str]
    ref: list[str]
    systems: list[tuple[str, list[str]]]  # (name, hypotheses); the first is the baseline
    lowercase: bool = False
    tokenize: Optional[str] = None  # sacreBLEU's tokenizer; None: its default (13a)

    def bleu(self, hypotheses: Sequence[str], lines: Sequence[int]) -> float:
        return score([hypotheses[i] for i in lines], [self.ref[i] for i in lines],
                     lowercase=self.lowercase, tokenize=self.tokenize).bleu


def parse_system(option: str) -> tuple[str, Path]:
    """--hyp NAME=FILE, or --hyp FILE (then named after the file)."""
    name, sep, file = option.partition("=")
    if not sep:
        return Path(option).name, Path(option)
    if not name or not file:
        raise NmtError(f"--hyp {option!r}: write NAME=FILE, e.g. --hyp beam12=test.hyp")
    return name, Path(file)


def existing(path: Path, option: str) -> Path:
    """A file named by an option, checked here so that the message names the option."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "not found"
        raise DataError(f"{option} {path} {what}: give the path of a text file, one sentence per line")
    return path


def read_test_set(src: Path, ref: Path, hyp_options: Sequence[str], *, lowercase: bool = False,
                  tokenize: Optional[str] = None) -> TestSet:
    if not hyp_options:
        raise NmtError("no system given: add --hyp NAME=FILE (once per system, the first is the baseline)")
    systems = [parse_system(option) for option in hyp_options]
    names = [name for name, _ in systems]
    if len(set(names)) < len(names):
        raise NmtError(f"two systems share a name ({', '.join(names)}): name each one, --hyp NAME=FILE")
    src_lines, ref_lines = read_lines(existing(src, "--src")), read_lines(existing(ref, "--ref"))
    if len(src_lines) != len(ref_lines):
        raise DataError(f"{src} has {len(src_lines)} lines but {ref} has {len(ref_lines)}: "
                        f"the source and its references must match line for line")
    hypotheses = []
    for name, path in systems:
        lines = read_lines(existing(path, "--hyp"), allow_empty=True)
        if len(lines) != len(ref_lines):
            raise DataError(f"{path} has {len(lines)} lines but {ref} has {len(ref_lines)}: "
                            f"hypotheses and references must match line for line")
        hypotheses.append((name, lines))
    return TestSet(src_lines, ref_lines, hypotheses, lowercase, tokenize)


def bucket_rows(test: TestSet, values: Sequence[float], edges: Sequence[float], names: Sequence[str]) -> list[list]:
    """One row per bucket: [name, sentences, BLEU of each system], then the "all" row.
    A line whose value is NaN (an empty source line) counts only in "all"; an empty bucket
    has no BLEU."""
    kept = [i for i, v in enumerate(values) if not math.isnan(v)]
    index = buckets.assign([values[i] for i in kept], edges)
    members = [[line for line, b in zip(kept, index) if b == k] for k in range(len(edges) + 1)]
    rows = [[name, len(lines)] + [test.bleu(hyps, lines) if lines else None for _, hyps in test.systems]
            for name, lines in zip(names, members)]
    everything = list(range(len(test.ref)))
    return rows + [["all", len(everything)] + [test.bleu(hyps, everything) for _, hyps in test.systems]]


def significance(test: TestSet, samples: int = 1000) -> dict:
    """Each system against the first by paired bootstrap resampling, sacreBLEU's implementation
    (seeded by SACREBLEU_SEED, 12345 unless set). ci95 is the half-width of the 95% interval
    around the bootstrap mean."""
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest

    metric = BLEU(lowercase=test.lowercase, tokenize=test.tokenize)  # score() already vetted these
    signatures, results = PairedTest(test.systems, {"BLEU": metric}, [test.ref], test_type="bs",
                                     n_samples=samples)()
    key = next(k for k in results if k != "System")

    def rounded(value):
        return None if value is None else round(float(value), 4)

    return {"test": "paired bootstrap resampling (sacrebleu.significance.PairedTest)", "samples": samples,
            "baseline": test.systems[0][0], "signature": signatures[key].format(),
            "systems": [{"name": name, "bleu": rounded(r.score), "mean": rounded(r.mean), "ci95": rounded(r.ci),
                         "p_value": rounded(r.p_value)} for name, r in zip(results["System"], results[key])]}


def plot_rows(rows: list[list], names: Sequence[str], legend: Sequence[str], title: str, xlabel: str,
              path: Path) -> Path:
    """BLEU per bucket, a line per system; each tick names its bucket and how many sentences it holds."""
    figure, axes = new_figure(title, xlabel, "BLEU")
    positions = range(len(rows))
    for k, label in enumerate(legend):
        values = [math.nan if row[2 + k] is None else row[2 + k] for row in rows]
        axes.plot(positions, values, marker="o", linewidth=1.8, color=f"C{k % 10}", label=label)
    axes.set_xticks(list(positions), [f"{row[0]}\nn={row[1]}" for row in rows])
    top = max([v for row in rows for v in row[2:] if v is not None], default=0)
    axes.set_ylim(0, max(10.0, top * 1.1))
    add_legend(axes)
    return save(figure, path)


def write_analysis(test: TestSet, kind: str, values: Sequence[float], edges: Sequence[float], *, whole_numbers: bool,
                   title: str, xlabel: str, out: Path, samples: int, extra: Sequence[Path] = (),
                   inputs: Optional[dict] = None) -> list[Path]:
    """KIND.png and KIND.csv (BLEU per bucket), and significance.json where there are two systems or more."""
    names = [name for name, _ in test.systems]
    rows = bucket_rows(test, values, edges, buckets.labels(edges, whole_numbers=whole_numbers))
    overall = rows.pop()
    legend = [f"{name} (BLEU {overall[2 + k]:.2f})" for k, name in enumerate(names)]
    written = list(extra)
    if len(test.systems) > 1:
        result = significance(test, samples)
        written.append(write_json(out / "significance.json", result))
        p_values = [s["p_value"] for s in result["systems"]]
        legend = [label if p is None else f"{label[:-1]}, p={p:.3g} vs {names[0]})"
                  for label, p in zip(legend, p_values)]
    written.insert(0, plot_rows(rows, names, legend, title, xlabel, out / f"{kind}.png"))
    written.insert(1, write_csv(out / f"{kind}.csv", ["bucket", "sentences"] + [f"BLEU {n}" for n in names],
                                rows + [overall]))
    shown_edges = [int(e) if e == int(e) else e for e in edges]  # 5 rather than 5.0
    record(out, kind, {**(inputs or {}), "buckets": shown_edges}, written)
    return written


def analyze_lengths(test: TestSet, out: Path, *, edges: Optional[Sequence[float]] = None, samples: int = 1000,
                    inputs: Optional[dict] = None) -> list[Path]:
    """BLEU against source length in words (Figure 3, left)."""
    values = [float(n) if n else math.nan for n in buckets.lengths(test.src)]  # an empty line has no bucket
    return write_analysis(test, "lengths", values, list(edges or buckets.LENGTH_EDGES), whole_numbers=True,
                          title="BLEU by source sentence length", xlabel="source length (words)", out=out,
                          samples=samples, inputs=inputs)


def analyze_frequency(test: TestSet, train: Path, out: Path, *, edges: Optional[Sequence[float]] = None,
                      samples: int = 1000, inputs: Optional[dict] = None) -> list[Path]:
    """BLEU against the average frequency rank of the source words (Figure 3, right), the ranks
    counted on the training source text; by default buckets of about equal size."""
    ranks = buckets.word_ranks(read_lines(existing(train, "--train")))
    values = [buckets.average_rank(sentence, ranks) for sentence in test.src]
    edges = list(edges or buckets.quantile_edges([v for v in values if not math.isnan(v)]))
    names = buckets.labels(edges, whole_numbers=False)
    index = buckets.assign([0.0 if math.isnan(v) else v for v in values], edges)
    sentences = write_csv(out / "frequency_sentences.csv", ["line", "words", "average rank", "bucket"],
                          [[i + 1, len(s.split()), None if math.isnan(v) else round(v, 3),
                            None if math.isnan(v) else names[b]]
                           for i, (s, v, b) in enumerate(zip(test.src, values, index))])
    inputs = {**(inputs or {}), "train": str(train), "training word types": len(ranks),
              "rank of an unseen word": len(ranks) + 1}
    return write_analysis(test, "frequency", values, edges, whole_numbers=False,
                          title="BLEU by average word frequency rank",
                          xlabel="average frequency rank of the source words (1 = most frequent)", out=out,
                          samples=samples, extra=[sentences], inputs=inputs)
