"""`nmt quickstart`: the whole pipeline on a corpus it makes itself, in a few minutes on a CPU.

The task: English number words -> French number words ("three hundred and forty-two" ->
"trois cent quarante-deux"), written by num2words. It is a real translation problem in
miniature: French reorders and fuses words ("quatre-vingt-dix-sept"), the vocabularies differ,
and the test numbers never occur in training, so the model must compose, not recall.
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Optional

import typer

from nmt.config import SHIPPED, load_config
from nmt.data.prepare import prepare
from nmt.decode.translate import Translator
from nmt.files import write_atomically
from nmt.errors import NmtError
from nmt.evaluate import score
from nmt.train.start import train

log = logging.getLogger("nmt")

DEFAULT_CONFIG = SHIPPED / "quickstart.yaml"  # package data: found in a non-editable install too
SPLIT_SIZES = {"train": 12000, "valid": 300, "test": 500}


def make_corpus(folder: Path, *, seed: int = 1, largest: int = 999_999) -> dict[str, Path]:
    """Write {train,valid,test}.{en,fr}: disjoint sets of random numbers in words."""
    try:
        from num2words import num2words
    except ImportError:
        raise NmtError("the quickstart needs the num2words package: pip install num2words") from None
    rng = random.Random(seed)
    # Small numbers are few; draw the size of a number first so every magnitude is seen.
    numbers: list[int] = []
    seen: set[int] = set()
    while len(numbers) < sum(SPLIT_SIZES.values()):
        digits = rng.randint(1, len(str(largest)))
        n = rng.randint(0 if digits == 1 else 10 ** (digits - 1), min(10 ** digits - 1, largest))
        if n not in seen or len(seen) < 10:  # the ten digits may repeat; everything else is unique
            seen.add(n)
            numbers.append(n)
    folder.mkdir(parents=True, exist_ok=True)
    prefixes, start = {}, 0
    for split, size in SPLIT_SIZES.items():
        chunk = numbers[start:start + size]
        start += size
        for lang in ("en", "fr"):
            text = "".join(num2words(n, lang=lang) + "\n" for n in chunk)
            (folder / f"{split}.{lang}").write_text(text, encoding="utf-8")
        prefixes[split] = folder / split
    return prefixes


def run_quickstart(workdir: Path, config_path: Optional[Path], overrides: list[str]) -> dict:
    """The whole pipeline in `workdir`; returns the test scores. If it fails before the model is
    trained, the work folder it made goes again, so that the next attempt can start."""
    if workdir.exists() and not workdir.is_dir():
        raise NmtError(f"--workdir {workdir} is a file: name a folder (it is made if missing)")
    if workdir.exists() and any(workdir.iterdir()):
        raise NmtError(f"{workdir} already exists and is not empty: remove it or pass --workdir NEW_FOLDER")
    corpus = workdir / "corpus"
    config = load_config(config_path or DEFAULT_CONFIG, [  # checked before anything is written
        *(f"data.{split}={corpus / split}" for split in SPLIT_SIZES), f"data.prepared={workdir / 'prepared'}",
        f"train.run_dir={workdir / 'run'}", *overrides])
    made = not workdir.exists()
    try:
        return _run(workdir, config)
    except BaseException:
        if made and not (workdir / "run" / "last").exists():
            shutil.rmtree(workdir, ignore_errors=True)
        raise


def _run(workdir: Path, config) -> dict:
    say = log.info
    say(f"1/4 writing a generated English-French corpus of number words to {workdir / 'corpus'}")
    make_corpus(workdir / "corpus")
    say("2/4 nmt preprocess")
    prepare(config.data, config.data.prepared)
    say("3/4 nmt train")
    run_dir = train(config)
    say("4/4 nmt translate and nmt bleu on the test split")
    sources = (Path(config.data.prepared) / "test.src.txt").read_text(encoding="utf-8").splitlines()
    references = (Path(config.data.prepared) / "test.tgt.txt").read_text(encoding="utf-8").splitlines()
    translator = Translator.load(run_dir / "best", config.train.device)
    outputs = [hyps[0].text for hyps in translator.translate(sources)]
    write_atomically(workdir / "test.hyp.fr", "".join(line + "\n" for line in outputs))
    result = score(outputs, references)
    exact = sum(o == r for o, r in zip(outputs, references)) / len(references)
    typer.echo(f"\ntest BLEU {result.bleu:.2f}  chrF {result.chrf:.2f}  exact match {100 * exact:.1f}% "
               f"(beam {config.decode.beam}, {len(references)} numbers never seen in training)")
    typer.echo(f"signature: {result.bleu_signature}\n")
    for source, output, reference in list(zip(sources, outputs, references))[:5]:
        typer.echo(f"  en:  {source}\n  nmt: {output}\n  ref: {reference}\n")
    typer.echo(f"translate more: echo 'four hundred and two' | nmt translate --checkpoint {run_dir / 'best'} --beam 5")
    return {"bleu": result.bleu, "chrf": result.chrf, "exact_match": round(exact, 4), "beam": config.decode.beam,
            "test_sentences": len(references), "signature": result.bleu_signature}
