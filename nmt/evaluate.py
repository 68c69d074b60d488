"""Corpus BLEU and chrF through sacreBLEU, with its signatures."""

from __future__ import annotations

from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF

from nmt.errors import DataError


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    sentences: int
    bleu_detail: str  # sacreBLEU's line: n-gram precisions, brevity penalty, lengths

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def _bleu_metric(lowercase: bool, tokenize: str | None) -> BLEU:
    """sacreBLEU's BLEU, with an unknown or unusable tokenizer reported as a user error."""
    names = list(getattr(BLEU, "TOKENIZERS", []))
    if tokenize is not None and names and tokenize not in names:
        raise DataError(f"unknown BLEU tokenizer '{tokenize}': use one of {', '.join(names)}")
    try:
        return BLEU(lowercase=lowercase, tokenize=tokenize)
    except (RuntimeError, ImportError, OSError) as e:  # e.g. ja-mecab without its extra packages
        detail = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
        raise DataError(f"BLEU tokenizer '{tokenize}' cannot be used here: {detail}") from None


def score(hypotheses: list[str], references: list[str], *, lowercase: bool = False,
          tokenize: str | None = None) -> Scores:
    """Corpus BLEU and chrF; the defaults are sacreBLEU's (cased, 13a tokenization)."""
    if len(hypotheses) != len(references):
        raise DataError(f"{len(hypotheses)} hypotheses but {len(references)} references: they must match line for line")
    bleu = _bleu_metric(lowercase, tokenize)
    chrf = CHRF(lowercase=lowercase)
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return Scores(bleu=round(bleu_score.score, 2), chrf=round(chrf_score.score, 2),
                  bleu_signature=str(bleu.get_signature()), chrf_signature=str(chrf.get_signature()),
                  sentences=len(hypotheses), bleu_detail=str(bleu_score))
