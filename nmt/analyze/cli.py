"""`nmt analyze ...`: a Typer sub-app; nmt/cli.py mounts it with
`app.add_typer(analyze_app, name="analyze")`.

Each command parses its options, calls one function of this package and prints what it wrote;
an NmtError becomes one `error:` line on stderr and exit code 2, through nmt.cli's user_errors.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import List, Optional

import typer

from nmt.errors import NmtError

analyze_app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                          rich_markup_mode=None,
                          help="Plots and tables: training curves, BLEU by sentence length and word "
                               "frequency, sentence vectors, attention heatmaps, and an HTML report of them.")

OUT = typer.Option(..., "--out", "-o", help="Folder for the PNG plots and their CSV/JSON numbers.")
REPORT_FLAG = typer.Option(False, "--report", help="Also write OUT/report.html showing everything in OUT.")
HYP = typer.Option(..., "--hyp", help="A system's output: NAME=FILE (repeatable; the first is the baseline).")
SRC = typer.Option(..., "--src", help="Test source text, one sentence per line.")
REF = typer.Option(..., "--ref", help="Reference translations, line for line.")
BUCKETS = typer.Option(None, "--buckets", help="Upper edges of the buckets, e.g. 5,10,20.")
SAMPLES = typer.Option(1000, "--bootstrap-samples", help="Resamples of the paired bootstrap test.")
LOWERCASE = typer.Option(False, "--lowercase", help="Case-insensitive BLEU.")
TOKENIZE = typer.Option(None, "--tokenize", help="sacreBLEU tokenizer (13a, intl, none, ...) [13a].")


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NmtError("nmt analyze draws with matplotlib, which is not installed: pip install matplotlib") from None


def _with_matplotlib(command):
    @functools.wraps(command)
    def checked(*args, **kwargs):
        _require_matplotlib()
        return command(*args, **kwargs)

    return checked


def user_errors(command):
    """nmt.cli.user_errors, looked up when the command runs: nmt.cli imports this module to mount
    the sub-app, so importing nmt.cli here at import time would be circular. Every command draws
    or reads plots, so each first checks that matplotlib is there."""
    checked = _with_matplotlib(command)

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from nmt.cli import user_errors as print_user_errors

        return print_user_errors(checked)(*args, **kwargs)

    return wrapper


def _finish(out: Path, written: list[Path], report: bool) -> None:
    if report:
        from nmt.analyze.report import build_report

        written = written + [build_report([out], out)]
    typer.echo(f"wrote {len(written)} files to {out}: " + ", ".join(p.name for p in written))


def _samples(samples: int) -> int:
    if samples < 1:
        raise NmtError(f"--bootstrap-samples must be at least 1, got {samples}")
    return samples


@analyze_app.command()
@user_errors
def curves(
    runs: List[Path] = typer.Argument(..., help="Run folders (each with log.jsonl), overlaid."),
    out: Path = OUT,
    report: bool = REPORT_FLAG,
):
    """Loss, perplexity, dev BLEU, learning rate and speed against steps and wall time."""
    from nmt.analyze.curves import analyze_curves
    from nmt.analyze.outputs import output_folder

    _finish(out, analyze_curves(list(runs), output_folder(out)), report)


@analyze_app.command()
@user_errors
def lengths(src: Path = SRC, ref: Path = REF, hyp: List[str] = HYP, out: Path = OUT,
            buckets: Optional[str] = BUCKETS, bootstrap_samples: int = SAMPLES, lowercase: bool = LOWERCASE,
            tokenize: Optional[str] = TOKENIZE, report: bool = REPORT_FLAG):
    """BLEU by source length in words, the paper's Figure 3 (left).

    Buckets 1-5, 6-10, ..., 36-40, 41+ unless --buckets gives other upper edges."""
    from nmt.analyze.buckets import parse_edges
    from nmt.analyze.outputs import output_folder
    from nmt.analyze.systems import analyze_lengths, read_test_set

    edges = parse_edges(buckets, whole_numbers=True) if buckets else None
    test = read_test_set(src, ref, hyp, lowercase=lowercase, tokenize=tokenize)
    inputs = {"src": str(src), "ref": str(ref), "hyp": list(hyp)}
    _finish(out, analyze_lengths(test, output_folder(out), edges=edges, samples=_samples(bootstrap_samples),
                                 inputs=inputs), report)


@analyze_app.command()
@user_errors
def frequency(src: Path = SRC, ref: Path = REF, hyp: List[str] = HYP,
              train: Path = typer.Option(..., "--train", help="Training source text: the word counts."),
              out: Path = OUT, buckets: Optional[str] = BUCKETS, bootstrap_samples: int = SAMPLES,
              lowercase: bool = LOWERCASE, tokenize: Optional[str] = TOKENIZE, report: bool = REPORT_FLAG):
    """BLEU by the average frequency rank of the source words, the paper's Figure 3 (right).

    Ranks are counted on --train (1 = most frequent, an unseen word: vocabulary size + 1); 8 buckets
    of about equal size unless --buckets gives upper edges."""
    from nmt.analyze.buckets import parse_edges
    from nmt.analyze.outputs import output_folder
    from nmt.analyze.systems import analyze_frequency, read_test_set

    edges = parse_edges(buckets, whole_numbers=False) if buckets else None
    test = read_test_set(src, ref, hyp, lowercase=lowercase, tokenize=tokenize)
    inputs = {"src": str(src), "ref": str(ref), "hyp": list(hyp)}
    _finish(out, analyze_frequency(test, train, output_folder(out), edges=edges, samples=_samples(bootstrap_samples),
                                   inputs=inputs), report)


@analyze_app.command()
@user_errors
def vectors(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder, or a run folder (uses best)."),
    phrases: str = typer.Argument(..., help="Phrase file (one per line), or a shipped set: en, de."),
    out: Path = OUT,
    state: str = typer.Option("h", "--state", help="The top layer's final h, c, or both concatenated."),
    device: str = typer.Option("cpu", help="cpu, auto, cuda or cuda:N."),
    report: bool = REPORT_FLAG,
):
    """The encoder's final state of each phrase, projected to 2-D with PCA (Figure 2)."""
    from nmt.analyze.vectors import STATES, analyze_vectors

    if state not in STATES:  # before loading torch and the model
        raise NmtError(f"--state {state!r}: choose one of {', '.join(STATES)}")
    from nmt.analyze.outputs import output_folder

    _finish(out, analyze_vectors(checkpoint, phrases, output_folder(out), state=state, device=device), report)


@analyze_app.command()
@user_errors
def attention(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder, or a run folder (uses best); a model with "
                                                "attention."),
    sentences_file: Optional[Path] = typer.Argument(None, metavar="SENTENCES",
                                                    help="Source sentences, one per line."),
    sentence: List[str] = typer.Option([], "--sentence", help="A source sentence (repeatable; before the file's)."),
    out: Path = OUT,
    beam: Optional[int] = typer.Option(None, help="Beam size of the translations shown [the checkpoint's]."),
    device: str = typer.Option("cpu", help="cpu, auto, cuda or cuda:N."),
    report: bool = REPORT_FLAG,
):
    """Heatmaps of where the model attends: source pieces against the target pieces of its translation."""
    from nmt.analyze.attention import analyze_attention, read_sentences

    chosen = read_sentences(sentences_file, sentence)  # before loading torch and the model
    _finish(out, analyze_attention(checkpoint, chosen, out, beam=beam, device=device), report)


@analyze_app.command("report")
@user_errors
def report_command(
    folders: List[Path] = typer.Argument(..., help="Run folders (plotted as curves) and nmt analyze output folders."),
    out: Path = OUT,
):
    """One self-contained HTML page (OUT/report.html) with every plot and table of the folders."""
    from nmt.analyze.report import build_report

    typer.echo(f"wrote {build_report(list(folders), out)}")
