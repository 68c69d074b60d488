"""Language modelling: a prepared monolingual folder -> windows of the token stream (truncated BPTT)
or whole sentences -> the language model's loss.

The stream: EOS, then every line of a split, each followed by EOS (so every word, the first one
too, is predicted from a line end), cut into `rows` parallel rows (row r holds tokens r*n ..
r*n + n - 1). Training leaves the last len % rows tokens out; scoring pads the last row instead,
so that every token of the text is scored. A window of length L at `start` feeds tokens start ..
start+L-1 of every row and predicts start+1 .. start+L, so the windows of an epoch predict every
position of every row but the first exactly once; the state flows from a window into the next
(the model carries it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from nmt.config import Config
from nmt.data.batching import Batch, ParallelData, pad
from nmt.data.samplers import BucketSampler
from nmt.data.monolingual import lm_tokenizer_file
from nmt.data.prepare import read_manifest
from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.errors import ConfigError
from nmt.model.lm import LanguageModel, build_language_model


@dataclass
class StreamBatch(Batch):
    """A window of the stream (or a batch of sentences): (B, T) inputs and their next tokens."""

    tokens_in: torch.Tensor  # (B, T)
    tokens_out: torch.Tensor  # (B, T); PAD where there is nothing to predict
    first: torch.Tensor  # () 1.0: start from a zero state (a stream's first window, every sentence batch)
    num_tokens: int
    total_examples: int  # rows
    total_tokens: int


def token_stream(data: ParallelData) -> np.ndarray:
    """EOS, then every line's tokens each followed by EOS, as one int64 array."""
    ids, offsets = data.sides["tgt"]
    lines = np.insert(np.asarray(ids, dtype=np.int64), offsets[1:], EOS)  # each line's tokens, then EOS
    return np.concatenate([np.array([EOS], dtype=np.int64), lines])


def stream_rows(stream: np.ndarray, rows: int, *, keep_tail: bool = False) -> np.ndarray:
    """(rows, n) with row r the r-th contiguous stretch of the stream; the tail that does not fill
    a row is left out, or (`keep_tail`) kept, the last row padded with PAD."""
    n = -(-len(stream) // rows) if keep_tail else len(stream) // rows
    if n < 2:
        raise ConfigError(f"the stream of {len(stream)} tokens is too short for {rows} rows: lower the batch size")
    grid = np.full(rows * n, PAD, dtype=np.int64)
    grid[: min(len(stream), rows * n)] = stream[: rows * n]
    return grid.reshape(rows, n)


def window_batch(rows: np.ndarray, start: int, length: int) -> StreamBatch:
    tokens_in = torch.from_numpy(np.ascontiguousarray(rows[:, start:start + length]))
    tokens_out = torch.from_numpy(np.ascontiguousarray(rows[:, start + 1:start + 1 + length]))
    count = tokens_out.numel()
    return StreamBatch(tokens_in=tokens_in, tokens_out=tokens_out, first=torch.tensor(float(start == 0)),
                       num_tokens=count, total_examples=rows.shape[0], total_tokens=count)


class WindowSampler:
    """The windows of an epoch as [start, length] arrays: fixed `bptt`, or (AWD-LSTM) a length
    drawn around it, deterministic given (seed, epoch)."""

    def __init__(self, positions: int, *, bptt: int, variable: bool, seed: int):
        self.positions, self.bptt, self.variable, self.seed = positions, bptt, variable, seed

    def epoch(self, epoch: int) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, epoch])
        windows, start = [], 0
        while start < self.positions - 1:
            length = self.bptt
            if self.variable:
                centre = self.bptt if rng.random() < 0.95 else self.bptt / 2
                length = max(5, int(rng.normal(centre, 5)))
            length = min(length, self.positions - 1 - start)
            windows.append(np.array([start, length]))
            start += length
        return windows

    def shape(self, window: np.ndarray) -> tuple:
        return (int(window[1]),)

    def padding_fraction(self, batches) -> float:
        return 0.0


class LanguageModelTask:
    def __init__(self, config: Config, *, rank: int = 0, processes: int = 1):
        if processes > 1:
            raise ConfigError("language models train in one process yet: run nmt train without torchrun")
        self.config = config
        prepared = Path(config.data.prepared)
        self.manifest = read_manifest(prepared)
        if self.manifest.get("task") != "lm":
            raise ConfigError(f"{prepared} was prepared for translation, not for a language model (task: lm): "
                              f"run nmt preprocess with this config")
        self.tokenizer_files = (lm_tokenizer_file(prepared),) * 2
        self.train_data = ParallelData(prepared, "train", sides=("tgt",))
        self.valid_data = ParallelData(prepared, "valid", sides=("tgt",))
        t = config.train
        self.sentences = t.lm_batching == "sentences"
        if self.sentences:
            lengths = self.train_data.tgt_lens + 1
            self._sampler = BucketSampler(lengths, lengths, batch_size=t.batch_size, max_tokens=t.max_tokens,
                                          pool=t.bucket_pool, seed=t.seed)
        else:
            self.rows = stream_rows(token_stream(self.train_data), t.batch_size)
            self._sampler = WindowSampler(self.rows.shape[1], bptt=t.bptt, variable=t.bptt_variable, seed=t.seed)
        self.train_size = int(self.train_data.tgt_lens.sum()) + len(self.train_data)  # tokens with EOS

    def build_model(self) -> LanguageModel:
        return build_language_model(self.config, self.manifest["tgt_vocab_size"])

    def sampler(self):
        return self._sampler

    def batch(self, indices: np.ndarray) -> StreamBatch:
        if self.sentences:
            return sentence_batch(self.train_data, indices)
        return window_batch(self.rows, int(indices[0]), int(indices[1]))

    def valid_batches(self) -> Iterator[StreamBatch]:
        """The whole dev split: its stream in train.eval_batch_size rows and windows of train.bptt
        (the state carried through), or its sentences."""
        return split_batches(self.valid_data, self.config)

    def dev_references(self) -> Optional[object]:
        return None


def sentence_batch(data: ParallelData, indices) -> StreamBatch:
    """Sentences as BOS w_1 .. w_n -> w_1 .. w_n EOS, right-padded; each starts from a zero state."""
    lines = [data.sentence("tgt", int(i)).tolist() for i in indices]
    tokens_in, tokens_out = pad(lines, prefix=BOS), pad(lines, suffix=EOS)
    count = int((tokens_out != PAD).sum())
    return StreamBatch(tokens_in=tokens_in, tokens_out=tokens_out, first=torch.tensor(1.0), num_tokens=count,
                       total_examples=len(lines), total_tokens=count)


def split_batches(data: ParallelData, config: Config, rows: Optional[int] = None) -> Iterator[StreamBatch]:
    """A whole split for scoring, as the model was trained on it: the stream in `rows` parallel rows
    (train.eval_batch_size) and windows of train.bptt, the state carried through, or its sentences."""
    t = config.train
    rows = rows or t.eval_batch_size
    if t.lm_batching == "sentences":
        order = np.argsort(data.tgt_lens, kind="stable")
        for start in range(0, len(order), rows):
            yield sentence_batch(data, order[start:start + rows])
        return
    stream = token_stream(data)
    grid = stream_rows(stream, max(1, min(rows, len(stream) // 2)), keep_tail=True)
    for start in range(0, grid.shape[1] - 1, t.bptt):
        yield window_batch(grid, start, min(t.bptt, grid.shape[1] - 1 - start))


class InMemoryLines(ParallelData):
    """Token-id lines held in memory with ParallelData's interface (the target side only)."""

    def __init__(self, lines: list[list[int]]):
        lengths = np.array([len(line) for line in lines], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.array([token for line in lines for token in line], dtype=np.int64)
        self.sides = {"tgt": (ids, offsets)}
        self.tgt_lens = self.src_lens = lengths


@torch.no_grad()
def score_text(model: LanguageModel, tokenizer, lines: list[str], config: Config, device: torch.device,
               rows: Optional[int] = None) -> dict:
    """The summed loss of `lines` under the model, and the perplexities it gives: per word (the
    lines' words and line ends), per token, and bits per character (characters and line ends)."""
    from nmt.device import autocast

    data = InMemoryLines(tokenizer.encode(lines))
    model.eval()
    model.carried.clear()  # a fresh state for this text's rows
    total, tokens = 0.0, 0
    for batch in split_batches(data, config, rows):
        with autocast(device, config.train.bf16):
            total += float(model(batch.to(device)))
        tokens += batch.num_tokens
    # Per word and per character: the mean loss of a scored token times the text's tokens per word
    # (or character), so that with several rows (whose first tokens go unscored) the figures stay
    # comparable; with one row every token is scored and they are exactly loss / words (characters).
    text_tokens = int(data.tgt_lens.sum()) + len(lines)
    words = sum(len(line.split()) for line in lines) + len(lines)
    characters = sum(len(line) for line in lines) + len(lines)
    mean = total / max(tokens, 1)
    return {"loss_sum": total, "tokens_scored": tokens, "tokens": text_tokens, "words": words,
            "characters": characters, "ppl_per_token": math.exp(min(mean, 50)),
            "ppl_per_word": math.exp(min(mean * text_tokens / max(words, 1), 50)),
            "bits_per_character": mean * text_tokens / max(characters, 1) / math.log(2)}


@torch.no_grad()
def sample_text(loaded, prompts: list[str], options) -> list[list[str]]:
    """Each prompt's continuations (options.n_samples of them, most likely first) from a loaded
    language model: the prompt follows a line start (EOS in a stream, BOS for sentence models),
    and a sample ends at the end of its line or at options' maximum length."""
    from nmt.decode.search import search

    model, tokenizer, config = loaded.model, loaded.tgt_tokenizer, loaded.checkpoint.config
    device = next(model.parameters()).device
    start = BOS if config.train.lm_batching == "sentences" else EOS
    ids = [[start, *line] for line in tokenizer.encode(prompts)]
    src = pad(ids).to(device)
    found = search(model, src, torch.tensor([len(line) for line in ids]), options)
    return [tokenizer.decode([h.tokens for h in hyps]) for hyps in found]
