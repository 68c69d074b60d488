"""Monolingual text for language models: vocabularies of words or characters, and `nmt preprocess`
for `task: lm`.

The prepared folder has the layout of a translation folder's target side, so the same readers
serve it: {split}.tgt.ids.npy + {split}.tgt.offsets.npy (line i is ids[offsets[i]:offsets[i+1]],
without its end-of-sentence token, which the batches add), the raw valid/test text, the vocabulary
(`tgt.vocab` for words or characters, `tgt.model` for SentencePiece) and manifest.json, which
also counts each split's words and characters: per-word perplexity and bits per character divide
by those, whatever the units.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import nmt
from nmt.config import DataConfig
from nmt.data.corpus import read_lines
from nmt.data.prepare import MANIFEST, _check_output, _move_into_place, write_ids
from nmt.data.tokenizer import BOS, EOS, PAD, UNK, Tokenizer, train_sentencepiece
from nmt.errors import CheckpointError, DataError

log = logging.getLogger("nmt")
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]  # ids PAD, UNK, BOS, EOS, as in every SentencePiece model of nmt
SPLITS = ("train", "valid", "test")


class Vocabulary:
    """Whole words or single characters <-> ids, with Tokenizer's interface (encode, decode,
    vocab_size, checksum, path). A text's own `<unk>` (Penn Treebank has them) is the unknown id."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"vocabulary {path} is missing: the checkpoint or prepared-data folder is incomplete")
        data = path.read_bytes()
        try:
            value = json.loads(data)
            units, tokens = value["units"], value["tokens"]
            assert units in ("word", "char") and tokens[:4] == SPECIALS and len(set(tokens)) == len(tokens)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise CheckpointError(f"vocabulary {path} is corrupt: restore it from the folder it came from") from None
        self.path, self.units, self.tokens = path, units, tokens
        self.checksum = hashlib.sha256(data).hexdigest()
        self.ids = {token: i for i, token in enumerate(tokens)}
        self.ids["<unk>"] = UNK

    @staticmethod
    def build(lines: Iterable[str], units: str, path: Path) -> "Vocabulary":
        """Every word (or character) of `lines`, most frequent first (ties: first seen), saved at `path`."""
        counts = Counter(token for line in lines for token in (line.split() if units == "word" else line))
        tokens = SPECIALS + [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1]) if t not in SPECIALS]
        path.write_text(json.dumps({"units": units, "tokens": tokens}, ensure_ascii=False), encoding="utf-8")
        return Vocabulary(path)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def split(self, line: str) -> list[str]:
        return line.split() if self.units == "word" else list(line)

    def encode(self, lines: Iterable[str]) -> list[list[int]]:
        return [[self.ids.get(token, UNK) for token in self.split(line)] for line in lines]

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        joiner = " " if self.units == "word" else ""
        return [joiner.join(self.tokens[i] for i in seq if i not in (PAD, BOS, EOS)) for seq in ids]


def load_tokenizer(path: str | Path):
    """A SentencePiece model (`.model`) or a word/character vocabulary (`.vocab`)."""
    return Vocabulary(path) if Path(path).suffix == ".vocab" else Tokenizer(path)


def lm_tokenizer_file(folder: Path) -> Path:
    """The vocabulary of a language model's prepared-data or checkpoint folder."""
    return folder / "tgt.vocab" if (folder / "tgt.vocab").exists() else folder / "tgt.model"


def _read(cfg: DataConfig) -> dict[str, list[str]]:
    if cfg.train is None or cfg.valid is None:
        raise DataError("preprocess for a language model needs data.train and data.valid: text files, one "
                        "sentence (or line of verse) per line, e.g. data/ptb/train.txt")
    texts = {split: read_lines(getattr(cfg, split)) for split in SPLITS if getattr(cfg, split)}
    if not any(texts["train"]):
        raise DataError(f"{cfg.train} holds no text: a training corpus needs one sentence per line")
    return {k: [line.lower() for line in v] if cfg.lowercase else v for k, v in texts.items()}


def _tokenizer(folder: Path, cfg: DataConfig, train: list[str]):
    if cfg.units == "subword":
        train_sentencepiece(train, folder / "tgt.model", vocab_size=cfg.tgt_vocab_size, model_type=cfg.spm_model_type,
                            character_coverage=cfg.character_coverage, max_sentences=cfg.spm_max_sentences)
        return Tokenizer(folder / "tgt.model")
    return Vocabulary.build(train, cfg.units, folder / "tgt.vocab")


def prepare_lm(cfg: DataConfig, out_dir: str | Path, *, overwrite: bool = False) -> dict:
    """Build the vocabulary from the training split, encode every split, write the folder."""
    out = Path(out_dir)
    _check_output(out, [Path(getattr(cfg, s)) for s in SPLITS if getattr(cfg, s)], overwrite)
    texts = _read(cfg)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.resolve().name}.tmp-", dir=out.parent) as tmp:
            folder = Path(tmp)
            tokenizer = _tokenizer(folder, cfg, texts["train"])
            manifest = {"nmt_version": nmt.__version__, "task": "lm", "units": cfg.units,
                        "src_vocab_size": tokenizer.vocab_size, "tgt_vocab_size": tokenizer.vocab_size,
                        "tokenizer_sha256": tokenizer.checksum, "data_config": cfg.__dict__, "splits": {}}
            for split, lines in texts.items():
                ids = tokenizer.encode(lines)
                write_ids(folder, f"{split}.tgt", ids, tokenizer.vocab_size)
                if split != "train":
                    (folder / f"{split}.tgt.txt").write_text("".join(s + "\n" for s in lines), encoding="utf-8")
                manifest["splits"][split] = {
                    "lines": len(lines), "tokens": sum(map(len, ids)) + len(lines),  # each line ends with EOS
                    "words": sum(len(line.split()) for line in lines) + len(lines),
                    "characters": sum(len(line) for line in lines) + len(lines),  # the line ends count
                    "unk": sum(s.count(UNK) for s in ids)}
                log.info(f"{split}: {len(lines)} lines, {manifest['splits'][split]['tokens']} tokens")
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            _move_into_place(folder, out)
    except OSError as e:
        raise DataError(f"cannot write the prepared data to {e.filename or out}: {e.strerror}; free space or "
                        f"fix permissions, or choose another output folder") from None
    return manifest
