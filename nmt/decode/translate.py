"""Translator, the public Python API: text in, typed translations out.

    from nmt import Translator
    translator = Translator.load("runs/quickstart/run")          # a run, checkpoint, or several (ensemble)
    [best, *others] = translator.translate(["three hundred and two"])[0]
    best.text, best.score, best.tokens

Decoding settings are one `DecodeOptions`: the checkpoint's `decode` section, changed with
`translator.options(beam=5, n_best=3)`; the command line and the scripts go through here too.
Lines are tokenized, batched by length, searched, detokenized and returned in input order.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from nmt.checkpoint import check_compatible, load_model
from nmt.config import Config, DecodeOptions
from nmt.data.batching import pad
from nmt.data.corpus import clean_line, decode_utf8, read_lines, split_lines
from nmt.data.tokenizer import Tokenizer
from nmt.decode.attention import AttentionMap, attention_maps
from nmt.decode.sampling import sampling_generator
from nmt.decode.quantize import quantize_device, quantize_model
from nmt.decode.score import Score, score_candidates
from nmt.decode.search import Counts, Hypothesis, search_batches
from nmt.decode.stream import is_stream, translate_stdin
from nmt.device import autocast, host_to_device, pick_device
from nmt.errors import CheckpointError
from nmt.files import write_atomically
from nmt.model.ensemble import Ensemble


@dataclass(frozen=True)
class Translation:
    text: str
    score: float  # what search ranks by: log_prob / length**alpha - word_penalty * length (EOS counted)
    tokens: tuple[int, ...]  # target token ids, without BOS and EOS
    log_prob: float  # the log-probability of the tokens and EOS
    token_scores: tuple[float, ...] = ()  # its terms: each token's log-probability, EOS's last


def length_batches(sequences: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices of the non-empty sequences, longest first, cut into batches."""
    order = sorted((i for i, s in enumerate(sequences) if len(s)), key=lambda i: -len(sequences[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class Translator:
    """A model (or an ensemble) with its tokenizers and decoding defaults."""

    def __init__(self, model, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, config: Config,
                 device: torch.device):
        self.model, self.src_tokenizer, self.tgt_tokenizer = model, src_tokenizer, tgt_tokenizer
        self.config, self.device = config, device

    @classmethod
    def load(cls, paths, device: str = "auto", quantize: Optional[str] = None) -> "Translator":
        """One checkpoint or run folder, or several (an ensemble: all trained on the first one's
        vocabularies). The first one's config gives the decoding defaults. `quantize="int8"`
        makes the weights int8 for a faster search on the CPU (nmt/decode/quantize.py)."""
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        device_ = pick_device(device) if quantize is None else quantize_device(quantize, device)
        loaded = [load_model(path, device_) for path in paths]
        for member in loaded if quantize is not None else ():
            quantize_model(member.model)
        first = loaded[0]
        for path, other in zip(paths[1:], loaded[1:]):
            check_same_target_vocabulary(first, other, str(paths[0]), str(path))
            check_compatible(first.checkpoint.identity(), other.checkpoint.identity(), same_model=False,
                             found_name=str(other.checkpoint.folder), expected_name=str(paths[0]),
                             fix="an ensemble needs models trained on the same prepared data")
        model = first.model if len(loaded) == 1 else Ensemble([m.model for m in loaded])
        return cls(model, first.src_tokenizer, first.tgt_tokenizer, first.checkpoint.config, device_)

    def options(self, **changes) -> DecodeOptions:
        """The checkpoint's decoding settings with some changed (None keeps one): the one place
        where the defaults come from."""
        return self.config.decode.override(**changes)

    def translate(self, lines: Sequence[str], options: Optional[DecodeOptions] = None) -> list[list[Translation]]:
        """For each line, its `options.n_best` translations, best first (one empty one for an empty line)."""
        options = options or self.options()
        if self.config.data.lowercase:
            lines = [line.lower() for line in lines]
        found = self.search_ids(self.src_tokenizer.encode(lines), options)
        return [[Translation(text, h.rank_score, tuple(h.tokens), h.log_prob, tuple(h.token_scores))
                 for text, h in zip(self.tgt_tokenizer.decode([h.tokens for h in hyps]), hyps)]
                for hyps in found]

    def score(self, sources: Sequence[str], candidates: Sequence[str], batch_size: Optional[int] = None) -> list[Score]:
        """The log-probability of candidates[i] as a translation of sources[i] under this model or
        ensemble, summed and per token (nmt/decode/score.py)."""
        return score_candidates(self, sources, candidates, batch_size)

    def attention(self, sources: Sequence[str], outputs: Sequence[Sequence[int]]) -> list[AttentionMap]:
        """The model's attention for outputs[i] (target token ids, e.g. `Translation.tokens`) as the
        translation of sources[i], with the pieces to label it (nmt/decode/attention.py)."""
        return attention_maps(self, sources, outputs)

    @torch.no_grad()
    def search_ids(self, sequences: Sequence[Sequence[int]], options: DecodeOptions,
                   counts: Optional[Counts] = None) -> list[list[Hypothesis]]:
        """Hypotheses for token-id sequences, in input order; an empty sequence gets one empty
        hypothesis. Samples come from one random stream per call, seeded by `options.seed`.
        `counts`, if given, adds up the search's decoder steps and row-steps."""
        results: list[list[Hypothesis]] = [[Hypothesis(0.0, [], 0.0)] for _ in sequences]
        model = self.model.with_mode(options.ensemble_mode) if isinstance(self.model, Ensemble) else self.model
        generator = sampling_generator(options.seed, self.device) if options.sample else None
        order = length_batches(sequences, options.batch_size)
        batches = ((host_to_device(pad([sequences[i] for i in indices]), self.device),
                    torch.tensor([len(sequences[i]) for i in indices])) for indices in order)
        with autocast(self.device, self.config.train.bf16):
            for indices, found in zip(order, search_batches(model, batches, options, generator=generator, counts=counts)):
                for i, hyps in zip(indices, found):
                    results[i] = hyps
        return results


def check_same_target_vocabulary(first, other, first_name: str, other_name: str) -> None:
    """An ensemble combines its members' probabilities token id by token id: the same ids must
    mean the same target pieces in every member."""
    mine, theirs = first.tgt_tokenizer, other.tgt_tokenizer
    if mine.vocab_size != theirs.vocab_size or mine.checksum != theirs.checksum:
        sizes = (f"{theirs.vocab_size} pieces, not {mine.vocab_size}" if mine.vocab_size != theirs.vocab_size
                 else "the same size, other pieces")
        raise CheckpointError(f"ensemble member {other_name} has another target vocabulary than {first_name} "
                              f"({sizes}): an ensemble combines next-token probabilities, so its members must be "
                              f"trained on the same prepared data (the same target tokenizer)")


def read_input(path: Optional[Path]) -> list[str]:
    if path is not None:
        return read_lines(path, allow_empty=True)  # an empty file translates to an empty file
    return [clean_line(line) for line in split_lines(decode_utf8(sys.stdin.buffer.read(), "<stdin>"))]


def format_output(results: list[list[Translation]], n_best: int, first_index: int = 0) -> str:
    if n_best == 1:
        return "".join(hyps[0].text + "\n" for hyps in results)
    # Moses n-best format: sentence index ||| hypothesis ||| score, then one more field: the
    # log-probability of each target piece, EOS's last (they sum to the log-probability)
    return "".join(f"{i} ||| {t.text} ||| {t.score:.4f} ||| {' '.join(f'{s:.4f}' for s in t.token_scores)}\n"
                   for i, hyps in enumerate(results, first_index) for t in hyps)


def translate_file(translator: Translator, input_path: Optional[Path], output_path: Optional[Path],
                   options: DecodeOptions, attention_path: Optional[Path] = None) -> int:
    """Translate a file (or stdin) to a file (or stdout); returns the number of lines written.

    With `attention_path`, the attention of each line's best translation goes there too, one JSON
    line per input line (`format_attention`); stdin is then read to its end first."""
    if attention_path is None and input_path is None and output_path is None and is_stream(sys.stdin.buffer):
        return translate_stdin(translator, options)  # a terminal or a pipe: answer each line as it arrives
    lines = read_input(input_path)
    results = translator.translate(lines, options)
    text = format_output(results, options.n_best)
    inputs = [input_path] if input_path else []
    if attention_path is not None:  # written first: a translation on stdout is the command's last word
        maps = translator.attention(lines, [hyps[0].tokens for hyps in results])
        write_atomically(attention_path, format_attention(maps), inputs=inputs)
    if output_path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(output_path, text, inputs=inputs)
    return len(lines)


def format_attention(maps: Sequence[AttentionMap]) -> str:
    """One JSON object per line: {"line": n (from 1), "source": pieces, "target": pieces then "</s>",
    "translation": text, "weights": one row per target piece of one weight per source piece}."""
    return "".join(json.dumps({"line": n, **m.as_dict()}, ensure_ascii=False) + "\n" for n, m in enumerate(maps, 1))
