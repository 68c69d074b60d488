"""Text in, text out: tokenize, batch by length, search, detokenize, restore input order."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from nmt.data.batching import pad
from nmt.data.corpus import clean_line, decode_utf8, read_lines, split_lines
from nmt.data.prepare import tokenizer_files
from nmt.data.tokenizer import Tokenizer
from nmt.decode.search import Hypothesis, beam_search, greedy_search
from nmt.device import autocast, pick_device
from nmt.errors import CheckpointError, DataError
from nmt.files import write_atomically
from nmt.model import build_model
from nmt.model.ensemble import Ensemble
from nmt.train import checkpoint


def length_batches(sequences: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Indices of the non-empty sequences, longest first, cut into batches."""
    order = sorted((i for i, s in enumerate(sequences) if len(s)), key=lambda i: -len(sequences[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def search_ids(model, sequences: Sequence[Sequence[int]], *, device: torch.device, beam: int, batch_size: int,
               max_len_a: float, max_len_b: int, length_penalty: float = 0.0, n_best: int = 1,
               bf16: bool = False) -> list[list[Hypothesis]]:
    """Hypotheses for every sequence in input order; an empty sequence gets one empty hypothesis."""
    results: list[list[Hypothesis]] = [[Hypothesis(0.0, [], 0.0)] for _ in sequences]
    for indices in length_batches(sequences, batch_size):
        src = pad([sequences[i] for i in indices]).to(device)
        src_lens = torch.tensor([len(sequences[i]) for i in indices])
        with autocast(device, bf16):
            if beam == 1 and n_best == 1:
                found = [[Hypothesis(0.0, tokens, 0.0)] for tokens in
                         greedy_search(model, src, src_lens, max_len_a=max_len_a, max_len_b=max_len_b)]
            else:
                found = beam_search(model, src, src_lens, beam=beam, max_len_a=max_len_a, max_len_b=max_len_b,
                                    length_penalty=length_penalty, n_best=n_best)
        for i, hyps in zip(indices, found):
            results[i] = hyps
    return results


@dataclass
class Translator:
    """A trained model (or an ensemble) with its tokenizers, rebuilt from checkpoint folders alone."""

    model: object  # a Seq2Seq, or an Ensemble of them
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    config: object
    device: torch.device

    @classmethod
    def load(cls, paths, device: str = "auto") -> "Translator":
        """One checkpoint, or several (an ensemble: all must share the first one's tokenizers)."""
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        device_ = pick_device(device)
        models, first = [], None
        for path in paths:
            folder = checkpoint.resolve(path)
            config = checkpoint.load_config(folder)
            src_file, tgt_file = tokenizer_files(folder)
            src_tok, tgt_tok = Tokenizer(src_file), Tokenizer(tgt_file)
            meta = checkpoint.read_meta(folder)
            for tok in {src_tok.path: src_tok, tgt_tok.path: tgt_tok}.values():
                if meta.get("tokenizers", {}).get(tok.path.name) != tok.checksum:
                    raise CheckpointError(f"{tok.path} is not the tokenizer this model was trained with "
                                          f"(checksum differs from meta.json): restore the checkpoint's own file")
            if first is None:
                first = (config, src_tok, tgt_tok)
            elif (src_tok.checksum, tgt_tok.checksum) != (first[1].checksum, first[2].checksum):
                raise CheckpointError(f"{folder} uses other tokenizers than {paths[0]}: "
                                      f"an ensemble needs models trained on the same prepared data")
            model = build_model(config, src_tok.vocab_size, tgt_tok.vocab_size)
            checkpoint.load_weights(model, folder)
            models.append(model.to(device_).eval())
        config, src_tok, tgt_tok = first
        return cls(models[0] if len(models) == 1 else Ensemble(models), src_tok, tgt_tok, config, device_)

    def translate(self, lines: Sequence[str], *, beam: int, batch_size: int, n_best: int = 1,
                  length_penalty: Optional[float] = None, max_len_a: Optional[float] = None,
                  max_len_b: Optional[int] = None) -> list[list[tuple[str, float]]]:
        """For each line, its n_best (text, score) pairs; score is the length-normalised log-probability."""
        d = self.config.decode
        if self.config.data.lowercase:
            lines = [line.lower() for line in lines]
        found = search_ids(
            self.model, self.src_tokenizer.encode(lines), device=self.device, beam=beam, batch_size=batch_size,
            n_best=n_best, length_penalty=d.length_penalty if length_penalty is None else length_penalty,
            max_len_a=d.max_len_a if max_len_a is None else max_len_a,
            max_len_b=d.max_len_b if max_len_b is None else max_len_b,
            bf16=self.config.train.bf16)
        return [[(text, h.rank_score) for text, h in zip(self.tgt_tokenizer.decode([h.tokens for h in hyps]), hyps)]
                for hyps in found]


def read_input(path: Optional[Path]) -> list[str]:
    if path is not None:
        return read_lines(path, allow_empty=True)  # an empty file translates to an empty file
    return [clean_line(line) for line in split_lines(decode_utf8(sys.stdin.buffer.read(), "<stdin>"))]


def format_output(results: list[list[tuple[str, float]]], n_best: int) -> str:
    if n_best == 1:
        return "".join(hyps[0][0] + "\n" for hyps in results)
    # Moses n-best format: sentence index ||| hypothesis ||| score
    return "".join(f"{i} ||| {text} ||| {score:.4f}\n" for i, hyps in enumerate(results) for text, score in hyps)


def translate_file(checkpoint_paths: list[Path], input_path: Optional[Path], output_path: Optional[Path], *,
                   beam: int, batch_size: int, n_best: int = 1, length_penalty: Optional[float] = None,
                   max_len_a: Optional[float] = None, max_len_b: Optional[int] = None, device: str = "auto") -> int:
    """Translate a file (or stdin) to a file (or stdout); returns the number of lines written."""
    if output_path is not None and not output_path.parent.is_dir():
        raise DataError(f"cannot write {output_path}: the folder {output_path.parent} does not exist; create it first")
    translator = Translator.load(checkpoint_paths, device)
    lines = read_input(input_path)
    results = translator.translate(lines, beam=beam, batch_size=batch_size, n_best=n_best,
                                   length_penalty=length_penalty, max_len_a=max_len_a, max_len_b=max_len_b)
    text = format_output(results, n_best)
    if output_path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(output_path, text)
    return len(lines)
