"""SentencePiece subwords: the toolkit's stand-in for the paper's word vocabularies.

Every model shares the same four special ids, so source and target agree on them.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import re
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm

from nmt.errors import CheckpointError, DataError

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class _Lines:
    """The training lines as SentencePiece reads them, from C++: an exception raised while reading
    them (a file that cannot be read) would come out of the trainer as a RuntimeError, so it is
    kept here, ends the lines, and is raised again after training."""

    def __init__(self, lines: Iterable[str]):
        self.lines, self.error = iter(lines), None

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        try:
            return next(self.lines)
        except StopIteration:
            raise
        except Exception as e:
            self.error = e
            raise StopIteration from None


def train_sentencepiece(
    lines: Iterable[str],
    model_path: Path,
    *,
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    max_sentences: int = 500_000,
) -> None:
    """Train a model on the non-empty `lines` (read once, as they come: a list or a generator)
    and write it to `model_path` (a `.model` file). SentencePiece keeps at most `max_sentences`
    of them, drawn at random when there are more (see stream.spm_lines)."""
    lines = (line for line in lines if line)
    first = next(lines, None)
    if first is None:
        raise DataError("no non-empty training lines to learn a vocabulary from")
    feed = _Lines(itertools.chain([first], lines))
    proto = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=feed,
            model_writer=proto,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
            max_sentence_length=1 << 16,
            num_threads=2,
            minloglevel=2,
        )
    except RuntimeError as e:
        if feed.error is not None:
            raise feed.error from None
        message = str(e)
        limit = re.search(r"<= (\d+)", message)
        if "Vocabulary size" in message and limit:
            raise DataError(
                f"vocabulary size {vocab_size} is larger than the training data supports "
                f"(at most {limit.group(1)} here): lower data.src_vocab_size / data.tgt_vocab_size"
            ) from None
        raise DataError(f"SentencePiece could not train a vocabulary: {message.splitlines()[-1]}") from None
    if feed.error is not None:
        raise feed.error
    model_path.write_bytes(proto.getvalue())


class Tokenizer:
    """One SentencePiece model: text <-> ids, with the file's checksum for compatibility checks."""

    def __init__(self, model_path: str | Path):
        path = Path(model_path)
        if not path.is_file():
            raise CheckpointError(f"tokenizer model {path} is missing: the checkpoint or prepared-data folder is incomplete")
        data = path.read_bytes()
        self.path = path
        self.checksum = hashlib.sha256(data).hexdigest()
        self.processor = spm.SentencePieceProcessor()
        try:
            self.processor.LoadFromSerializedProto(data)
        except Exception:  # sentencepiece raises several types for a bad proto
            raise CheckpointError(f"tokenizer model {path} is corrupt: restore it from the checkpoint or "
                                  f"prepared-data folder it came from") from None
        if self.processor.pad_id() != PAD or self.processor.eos_id() != EOS or self.processor.bos_id() != BOS:
            raise CheckpointError(f"tokenizer model {path} was not made by nmt preprocess (its special ids differ)")

    @property
    def vocab_size(self) -> int:
        return self.processor.get_piece_size()

    def encode(self, lines: Iterable[str], threads: int = -1) -> list[list[int]]:
        """The ids of each line; `threads` C++ threads (-1: one per core)."""
        return self.processor.encode(list(lines), num_threads=threads)

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return [self.processor.decode([i for i in seq if i > EOS]) for seq in ids]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        """The pieces of one sequence as the model sees them (`▁` marks a word's start), for display."""
        return [self.processor.id_to_piece(i) for i in ids]
