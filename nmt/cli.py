"""The `nmt` command: each subcommand parses, validates, and calls one library function.

A user error (an `NmtError`) becomes one line on stderr and a non-zero exit; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from nmt.analyze.cli import analyze_app
from nmt.errors import NmtError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Recurrent sequence-to-sequence translation (Sutskever, Vinyals & Le 2014).")
app.add_typer(analyze_app, name="analyze")  # nmt analyze curves|lengths|frequency|vectors|attention|report


def _print_version(value: bool) -> None:
    if value:
        import nmt

        typer.echo(f"nmt {nmt.__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print nmt's version and exit.")) -> None:
    """Recurrent sequence-to-sequence translation (Sutskever, Vinyals & Le 2014)."""


def user_errors(command):
    """Turn NmtError into `error: ...` and its exit code; Ctrl-C into exit 130 without a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from nmt.log import configure

        configure()  # messages on stderr, one per line (preprocess prints its own on stdout)
        try:
            return command(*args, **kwargs)
        except NmtError as e:
            typer.echo(f"{e.prefix}{e}", err=True)
            if e.interrupt:
                _exit_now(e.exit_code)
            raise typer.Exit(e.exit_code)
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            _exit_now(130)
        except BrokenPipeError:  # `nmt translate ... | head`
            sys.stderr.close()
            raise typer.Exit(0)

    return wrapper


def _exit_now(code: int) -> None:
    """Exit at once after a Ctrl-C or SIGTERM: everything worth keeping is written, and another
    Ctrl-C (two in quick succession) during the interpreter's shutdown would print a traceback or
    kill the process by the signal instead of exiting with `code`."""
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _positive(name: str, value: Optional[int]) -> None:
    if value is not None and value < 1:
        raise NmtError(f"{name} must be at least 1, got {value}")


def _flag(key: str) -> str:
    """The command-line flag of a config key: max_len_a -> --max-len-a."""
    return "--" + key.replace("_", "-")


SET_HELP = "Override a config value, e.g. --set train.lr=0.5 (repeatable)."


@app.command()
@user_errors
def preprocess(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config; its data section is used."),
    overrides: List[str] = typer.Option([], "--set", help=SET_HELP),
    src_lang: Optional[str] = typer.Option(None, help="Source language code: the ending of the source files."),
    tgt_lang: Optional[str] = typer.Option(None, help="Target language code: the ending of the target files."),
    train: Optional[str] = typer.Option(None, help="Training corpus prefix: PREFIX.SRC and PREFIX.TGT."),
    valid: Optional[str] = typer.Option(None, help="Validation corpus prefix (never filtered)."),
    test: Optional[str] = typer.Option(None, help="Test corpus prefix (never filtered)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Prepared-data folder [data.prepared]."),
    vocab_size: Optional[int] = typer.Option(None, help="Vocabulary size of both sides."),
    joint: Optional[bool] = typer.Option(None, "--joint/--separate", help="One shared vocabulary or one per side."),
    max_len: Optional[int] = typer.Option(None, help="Drop training pairs longer than this (tokens)."),
    max_len_ratio: Optional[float] = typer.Option(None, help="Drop training pairs with a longer length ratio."),
    overwrite: bool = typer.Option(False, help="Replace an existing prepared-data folder."),
):
    """Train SentencePiece, encode and filter a parallel corpus into a prepared-data folder."""
    from nmt.config import load_config
    from nmt.log import configure
    from nmt.tasks import prepare_data

    configure(sys.stdout)  # progress goes to stdout with the summary: stderr holds nothing but an error
    flags = {"src_lang": src_lang, "tgt_lang": tgt_lang, "train": train, "valid": valid, "test": test,
             "src_vocab_size": vocab_size, "tgt_vocab_size": vocab_size, "joint_vocab": joint,
             "max_len": max_len, "max_len_ratio": max_len_ratio, "prepared": str(out) if out else None}
    flag_overrides = [f"data.{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    cfg = load_config(config, list(overrides) + flag_overrides)
    manifest = prepare_data(cfg, overwrite=overwrite)
    typer.echo(f"wrote {cfg.data.prepared}: vocabularies {manifest['src_vocab_size']} / {manifest['tgt_vocab_size']}")


@app.command("train")
@user_errors
def train_command(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config of the run."),
    overrides: List[str] = typer.Option([], "--set", help=SET_HELP),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this folder from its last checkpoint."),
):
    """Train a model; checkpoints, config and log.jsonl go to train.run_dir."""
    from nmt.config import load_config

    # nmt.train.loop imports torch (a second or more): check the arguments and the config first.
    if resume is not None:
        if config is not None:
            raise NmtError("--resume takes the config from the checkpoint: drop --config (use --set to change values)")
        from nmt.train.start import resume as resume_run

        run_dir = resume_run(resume, overrides)
    else:
        if config is None:
            raise NmtError("nmt train needs --config CONFIG (e.g. configs/quickstart.yaml) or --resume RUN_DIR")
        cfg = load_config(config, overrides)
        from nmt.train.start import train

        run_dir = train(cfg)
    from nmt.train.distributed import first_process, leave

    leave()
    if first_process():
        # A run that never evaluated (eval_every beyond its last step) has `last` but no `best`.
        best = run_dir / "best" if (run_dir / "best").exists() else run_dir / "last"
        typer.echo(f"done: checkpoints in {run_dir} ({best.name}: {best})")


@app.command()
@user_errors
def translate(
    checkpoints: List[Path] = typer.Option(..., "--checkpoint", "-m",
                                           help="Checkpoint folder, or a run folder (uses best); "
                                                "repeat it to translate with an ensemble."),
    input: Optional[Path] = typer.Argument(None, help="Raw text, one sentence per line [stdin]."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file [stdout]."),
    beam: Optional[int] = typer.Option(None, help="Beam size; 1 is greedy [decode.beam]."),
    batch_size: Optional[int] = typer.Option(None, help="Sentences per batch [decode.batch_size]."),
    n_best: Optional[int] = typer.Option(None, help="Print this many hypotheses per sentence with their scores "
                                                    "[decode.n_best]."),
    length_penalty: Optional[float] = typer.Option(None, help="alpha in score / length**alpha [decode.length_penalty]."),
    max_len_a: Optional[float] = typer.Option(None, help="Output length limit a * source length + b [decode.max_len_a]."),
    max_len_b: Optional[int] = typer.Option(None, help="See --max-len-a [decode.max_len_b]."),
    min_len_a: Optional[float] = typer.Option(None, help="No EOS before a * source length + b tokens "
                                                         "[decode.min_len_a]."),
    min_len_b: Optional[int] = typer.Option(None, help="See --min-len-a [decode.min_len_b]."),
    word_penalty: Optional[float] = typer.Option(None, help="Subtracted from the score per output token: "
                                                            "positive favours shorter output [decode.word_penalty]."),
    no_repeat_ngram: Optional[int] = typer.Option(None, help="Never repeat an n-gram of this size; 0 is off "
                                                             "[decode.no_repeat_ngram]."),
    ensemble_mode: Optional[str] = typer.Option(None, help="Combine ensemble members by the mean of their "
                                                           "probabilities or log_linear [decode.ensemble_mode]."),
    sample: Optional[bool] = typer.Option(None, "--sample/--no-sample", help="Sample instead of searching "
                                                                              "[decode.sample]."),
    temperature: Optional[float] = typer.Option(None, help="Sampling temperature; 0 is greedy [decode.temperature]."),
    top_k: Optional[int] = typer.Option(None, help="Sample from the k most likely tokens; 0 is all [decode.top_k]."),
    top_p: Optional[float] = typer.Option(None, help="Sample from the smallest set of probability p; 1 is all "
                                                     "[decode.top_p]."),
    n_samples: Optional[int] = typer.Option(None, help="Samples per sentence; the n-best of them are printed "
                                                       "[decode.n_samples]."),
    seed: Optional[int] = typer.Option(None, help="Seed of the samples [decode.seed]."),
    cuda_graphs: Optional[bool] = typer.Option(None, "--cuda-graphs/--no-cuda-graphs",
                                               help="Replay search steps as CUDA graphs [decode.cuda_graphs]."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    quantize: Optional[str] = typer.Option(None, help="int8: int8 weights for a faster search on the CPU "
                                                      "(CPU only; nmt/decode/quantize.py says what is quantized)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch [torch's default: one per core]."),
    attention: Optional[Path] = typer.Option(None, "--attention", help="Also write the attention weights of each "
                                                                       "line's best translation to this file, one "
                                                                       "JSON line per input line (a model with "
                                                                       "attention; stdin is read whole)."),
):
    """Translate raw text, one output line per input line, in input order; from a terminal or a pipe,
    each line as it arrives."""
    for name, value in (("--beam", beam), ("--batch-size", batch_size), ("--n-best", n_best), ("--threads", threads)):
        _positive(name, value)
    if length_penalty is not None and length_penalty < 0:
        raise NmtError(f"--length-penalty must be 0 or more, got {length_penalty}")
    from nmt.decode.translate import Translator, translate_file  # imports torch: after the cheap checks
    from nmt.files import check_writable

    for path in (output, attention):
        if path is not None:
            check_writable(path, [input] if input else [])
    _check_attention_file(attention, output)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    translator = Translator.load(checkpoints, device, quantize=quantize)
    if attention is not None:  # before translating, which may take long
        from nmt.decode.attention import require_attention

        require_attention(translator.model, ", ".join(map(str, checkpoints)))
    options = translator.options(
        beam=beam, batch_size=batch_size, n_best=n_best, length_penalty=length_penalty, max_len_a=max_len_a,
        max_len_b=max_len_b, min_len_a=min_len_a, min_len_b=min_len_b, word_penalty=word_penalty,
        no_repeat_ngram=no_repeat_ngram, ensemble_mode=ensemble_mode, sample=sample, temperature=temperature,
        top_k=top_k, top_p=top_p, n_samples=n_samples, seed=seed, cuda_graphs=cuda_graphs, option_name=_flag)
    translate_file(translator, input, output, options, attention)


def _check_attention_file(attention: Optional[Path], output: Optional[Path]) -> None:
    """translate --attention: the weights must not overwrite the translation."""
    if output is not None and attention is not None and output.resolve() == attention.resolve():
        raise NmtError(f"--attention {attention} is the --output file too: name another file for the weights")


@app.command("score")
@user_errors
def score_command(
    checkpoints: List[Path] = typer.Option(..., "--checkpoint", "-m",
                                           help="Checkpoint or run folder; repeat it to score with an ensemble."),
    source: Path = typer.Option(..., "--source", "-s", help="The source sentences, one per line."),
    candidates: Optional[Path] = typer.Option(None, help="One candidate translation per source line."),
    nbest: Optional[Path] = typer.Option(None, help="A Moses n-best file: 'index ||| hypothesis ||| score' lines."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output file [stdout]."),
    rerank: bool = typer.Option(False, "--rerank", help="With --nbest: write each source's best candidate under "
                                                        "the weighted sum of the model's and the list's scores "
                                                        "(--weights, --per-token and --tune-on imply it)."),
    weights: Optional[str] = typer.Option(None, help="Rerank weights: the model's, then one per n-best score "
                                                     "[0.5,0.5, the paper's average]."),
    per_token: bool = typer.Option(False, "--per-token", help="Rerank with the model's per-token "
                                                              "log-probability, not the sum."),
    tune_on: Optional[Path] = typer.Option(None, help="Tune the rerank weights on this dev n-best file (maximising "
                                                      "BLEU); needs --tune-source and --tune-ref."),
    tune_source: Optional[Path] = typer.Option(None, help="The source lines of the --tune-on list."),
    tune_ref: Optional[Path] = typer.Option(None, help="The references of the --tune-on list."),
    batch_size: Optional[int] = typer.Option(None, help="Candidates per batch [decode.batch_size]."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
):
    """Score translations under the model: log-probabilities, or a reranked n-best list (the paper's rescoring)."""
    _positive("--batch-size", batch_size)
    if (candidates is None) == (nbest is None):
        raise NmtError("nmt score needs exactly one of --candidates FILE and --nbest FILE")
    tuning = [tune_on, tune_source, tune_ref]
    if any(tuning) and not all(tuning):
        raise NmtError("tuning needs all three of --tune-on DEV_NBEST, --tune-source DEV_SRC and --tune-ref DEV_REF")
    for path in (source, candidates, nbest, *tuning):  # before the model loads, which takes a while
        if path is not None and not path.is_file():
            raise NmtError(f"file {path} not found{' (it is a folder)' if path.is_dir() else ''}: check the path")
    reranks = rerank or weights is not None or per_token or tune_on is not None  # each implies --rerank
    if reranks and nbest is None:
        raise NmtError("--rerank, --weights, --per-token and --tune-on work on an n-best list: pass --nbest FILE")
    from nmt.decode import rescore  # imports torch: after the cheap checks
    from nmt.decode.rerank import parse_weights
    from nmt.decode.translate import Translator
    from nmt.files import check_writable

    options = rescore.RerankOptions(parse_weights(weights) if weights else None, per_token, tune_on, tune_source,
                                    tune_ref) if reranks else None
    if output is not None:
        check_writable(output)
    translator = Translator.load(checkpoints, device)
    tuned = rescore.score_files(translator, source, candidates=candidates, nbest=nbest, output=output,
                                rerank=options, batch_size=batch_size)
    if tuned is not None:
        typer.echo(tuned.describe(), err=True)


@app.command()
@user_errors
def average(
    checkpoints: List[Path] = typer.Argument(..., help="Checkpoint folders of one run, or one run folder with --best."),
    output: Path = typer.Option(..., "--output", "-o", help="The new checkpoint folder (must not exist)."),
    best: Optional[int] = typer.Option(None, help="With a run folder: average its N best-scoring checkpoints "
                                                  "(as many as train.keep_best kept)."),
):
    """Average the weights of several checkpoints of one run into a new checkpoint for translate."""
    _positive("--best", best)
    from nmt.checkpoint import CHECKPOINTS, average_checkpoints, best_checkpoints

    if best is not None:
        if len(checkpoints) != 1:
            raise NmtError("--best takes one run folder: pass either a run folder with --best N or checkpoint folders")
        checkpoints = best_checkpoints(checkpoints[0], best)
    else:
        runs = [p for p in checkpoints if (p / CHECKPOINTS).is_dir()]
        if runs:
            raise NmtError(f"{runs[0]} is a run folder: pass --best N to average its N best checkpoints, "
                           f"or name checkpoint folders (e.g. {runs[0] / CHECKPOINTS}/step-...)")
    out = average_checkpoints(checkpoints, output)
    fewer = f" (asked for {best}: the run keeps {len(checkpoints)}, train.keep_best)" if best and best > len(checkpoints) else ""
    typer.echo(f"averaged {len(checkpoints)} checkpoints into {out}{fewer}: " + ", ".join(p.name for p in checkpoints))


@app.command()
@user_errors
def bleu(
    hypotheses: Path = typer.Argument(..., help="System output, one sentence per line."),
    ref: Path = typer.Option(..., "--ref", "-r", help="Reference translations, line for line."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of text."),
    lowercase: bool = typer.Option(False, help="Case-insensitive BLEU and chrF."),
    tokenize: Optional[str] = typer.Option(None, help="sacreBLEU tokenizer (13a, intl, none, ...) [13a]."),
):
    """Corpus BLEU and chrF with sacreBLEU, and their signatures."""
    from nmt.data.corpus import read_lines
    from nmt.errors import DataError
    from nmt.evaluate import score

    hyp_lines, ref_lines = read_lines(hypotheses, allow_empty=True), read_lines(ref)
    if len(hyp_lines) != len(ref_lines):
        raise DataError(f"{hypotheses} has {len(hyp_lines)} lines but {ref} has {len(ref_lines)}: "
                        f"hypotheses and references must match line for line")
    result = score(hyp_lines, ref_lines, lowercase=lowercase, tokenize=tokenize)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
    else:
        typer.echo(f"BLEU {result.bleu:.2f}  chrF {result.chrf:.2f}  ({result.sentences} sentences)")
        typer.echo(result.bleu_detail)
        typer.echo(f"BLEU signature: {result.bleu_signature}")
        typer.echo(f"chrF signature: {result.chrf_signature}")


@app.command()
@user_errors
def sample(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-m", help="A language model's checkpoint or run folder."),
    prompts: List[str] = typer.Option([], "--prompt", help="Text the samples continue (repeatable) [none]."),
    count: int = typer.Option(1, "-n", help="Samples per prompt."),
    temperature: float = typer.Option(1.0, help="Softmax temperature; 0 is greedy."),
    top_k: int = typer.Option(0, help="Sample among the k most likely tokens (0: all)."),
    top_p: float = typer.Option(1.0, help="Sample among the smallest set of tokens with this probability."),
    seed: int = typer.Option(1, help="Random seed: the same seed gives the same samples."),
    max_len: int = typer.Option(200, help="Most tokens a sample has (it ends earlier at an end of line)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
):
    """Generate text from a language model, as the lecture does: sample the next token, feed it back."""
    for name, value in (("-n", count), ("--max-len", max_len)):
        _positive(name, value)
    from nmt.checkpoint import load_model
    from nmt.device import pick_device
    from nmt.tasks.lm import sample_text

    loaded = load_model(checkpoint, pick_device(device))
    if loaded.checkpoint.config.task != "lm":
        raise NmtError(f"{checkpoint} is a translation model: nmt sample generates from language models (task: lm); "
                       f"use nmt translate --sample")
    options = loaded.checkpoint.config.decode.override(
        sample=True, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, n_samples=count, n_best=count,
        min_len_a=0.0, min_len_b=0, max_len_a=0.0, max_len_b=max_len, option_name=_flag)
    for prompt, texts in zip(prompts or [""], sample_text(loaded, prompts or [""], options)):
        for text in texts:
            typer.echo(f"{prompt} {text}".strip())


@app.command()
@user_errors
def perplexity(
    text: Path = typer.Argument(..., help="Text to score, one sentence (or line) per line."),
    checkpoint: Path = typer.Option(..., "--checkpoint", "-m", help="A language model's checkpoint or run folder."),
    rows: int = typer.Option(1, "--batch-size", help="Parallel rows of the text's stream (1: every token scored)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of text."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
):
    """A language model's perplexity on a text: per word, per token, and bits per character."""
    _positive("--batch-size", rows)
    from nmt.checkpoint import load_model
    from nmt.data.corpus import read_lines
    from nmt.device import pick_device
    from nmt.tasks.lm import score_text

    loaded = load_model(checkpoint, pick_device(device))
    if loaded.checkpoint.config.task != "lm":
        raise NmtError(f"{checkpoint} is a translation model: nmt perplexity scores language models (task: lm)")
    lines = read_lines(text)
    result = score_text(loaded.model, loaded.tgt_tokenizer, lines, loaded.checkpoint.config,
                        next(loaded.model.parameters()).device, rows)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(f"perplexity {result['ppl_per_word']:.2f} per word ({result['words']:,} words with line ends), "
                   f"{result['ppl_per_token']:.2f} per token ({result['tokens_scored']:,} of {result['tokens']:,} "
                   f"scored); {result['bits_per_character']:.3f} bits per character")


from nmt.serve.limits import ServeSettings  # noqa: E402 (no torch): the one home of nmt serve's defaults

SERVING = ServeSettings()


@app.command()
@user_errors
def serve(
    checkpoints: List[str] = typer.Option(..., "--checkpoint", "-m", help="A run or checkpoint folder to serve, "
                                          "or NAME=PATH to name it (repeatable: several models)."),
    host: str = typer.Option(SERVING.host, help="Address to listen on; 0.0.0.0 opens it to other machines."),
    port: int = typer.Option(SERVING.port, help="TCP port."),
    max_batch: int = typer.Option(SERVING.max_batch, help="Most sentences per search batch; 1: no batching."),
    max_wait_ms: float = typer.Option(SERVING.max_wait_ms, help="How long a sentence waits for others to fill "
                                                                "its batch."),
    max_queue: int = typer.Option(SERVING.max_queue, help="Sentences waiting per model; beyond, 503 + Retry-After."),
    max_texts: int = typer.Option(SERVING.max_texts, help="Texts per request."),
    max_chars: int = typer.Option(SERVING.max_chars, help="Characters per text."),
    max_body_bytes: int = typer.Option(SERVING.max_body_bytes, help="Request body size limit."),
    max_beam: int = typer.Option(SERVING.max_beam, help="Largest beam (and n-best) a request may ask for."),
    max_samples: int = typer.Option(SERVING.max_samples, help="Most samples per sentence a request may ask for."),
    request_timeout: float = typer.Option(SERVING.request_timeout, help="Seconds from a request's arrival to its "
                                                                        "answer (then 503)."),
    body_timeout: float = typer.Option(SERVING.body_timeout, help="Seconds a client may take to send its body "
                                                                  "(then 408)."),
    max_connections: int = typer.Option(SERVING.max_connections, help="Translate requests in progress at once; "
                                        "beyond, 503 (open connections beyond twice this and 16: uvicorn's plain 503)."),
    retry_after: int = typer.Option(SERVING.retry_after, help="Seconds in the Retry-After header of a 503."),
    api_keys_file: Optional[Path] = typer.Option(None, help="API keys, one per line (NMT_SERVE_API_KEYS is read "
                                                            "too, comma-separated) [none: no key needed]."),
    cors_origins: List[str] = typer.Option([], "--cors-origin", help="Let pages of this origin call the API "
                                                                     "(repeatable; * for any) [none]."),
    threads: Optional[int] = typer.Option(SERVING.threads, help="CPU threads for PyTorch [one per core]."),
    device: str = typer.Option(SERVING.device, help="auto, cpu, cuda or cuda:N."),
    quantize: Optional[str] = typer.Option(SERVING.quantize, help="int8: int8 weights for a faster search on the "
                                                                  "CPU (as nmt translate --quantize)."),
    cuda_graphs: bool = typer.Option(SERVING.cuda_graphs, "--cuda-graphs/--no-cuda-graphs", help="Replay search "
                                     "steps as CUDA graphs on a GPU (2.4x the sentences/s of the eager search at 64 "
                                     "clients on an H200); ignored on the CPU."),
):
    """Serve translations over HTTP: POST /translate, GET /models, /health, /metrics, a web page at /."""
    from nmt.serve.auth import load_api_keys
    from nmt.serve.server import serve as run_server

    settings = ServeSettings(
        host=host, port=port, max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, max_texts=max_texts,
        max_chars=max_chars, max_body_bytes=max_body_bytes, max_beam=max_beam, max_samples=max_samples,
        request_timeout=request_timeout, body_timeout=body_timeout, max_connections=max_connections,
        retry_after=retry_after, api_keys=load_api_keys(api_keys_file), cors_origins=tuple(cors_origins),
        threads=threads, device=device, quantize=quantize, cuda_graphs=cuda_graphs)
    run_server(checkpoints, settings)


@app.command()
@user_errors
def quickstart(
    workdir: Path = typer.Option(Path("runs/quickstart"), help="Where the corpus, data and run go."),
    config: Optional[Path] = typer.Option(None, help="Config to use [configs/quickstart.yaml]."),
    overrides: List[str] = typer.Option([], "--set", help=SET_HELP),
):
    """Generate a small corpus (English -> French number words), then preprocess, train, translate, score."""
    from nmt.quickstart import run_quickstart

    run_quickstart(workdir, config, list(overrides))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # a Ctrl-C before a command's own handling began (imports, arguments)
        typer.echo("interrupted", err=True)
        _exit_now(130)


if __name__ == "__main__":
    main()
