"""Shared fixtures: a tiny generated parallel corpus, its prepared folder, and a tiny trained run.

The corpus is a toy translation task: source words w0..w19 map one-to-one onto target words
(their letters reversed and upper-cased) and the target keeps the source's order. Nothing here
reads ../shared/data.
"""

from __future__ import annotations

import io
import logging
import random
import shutil
from pathlib import Path

import pytest
import torch

from nmt.config import config_from_dict
from nmt.data.batching import ParallelBatch
from nmt.data.tokenizer import PAD

WORDS = [f"w{letter}{i}" for i, letter in zip(range(20), "abcdefghijklmnopqrst")]


def toy_translation(sentence: str) -> str:
    return " ".join(word[::-1].upper() for word in sentence.split())


def write_toy_corpus(folder: Path, sizes=(300, 40, 40), seed: int = 0) -> dict[str, Path]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    prefixes = {}
    for split, size in zip(("train", "valid", "test"), sizes):
        src = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(size)]
        (folder / f"{split}.src").write_text("".join(s + "\n" for s in src), encoding="utf-8")
        (folder / f"{split}.tgt").write_text("".join(toy_translation(s) + "\n" for s in src), encoding="utf-8")
        prefixes[split] = folder / split
    return prefixes


def pair_batch(src, src_lens, tgt_in, tgt_out) -> ParallelBatch:
    """A translation batch of hand-made tensors (src_lens None: every source row full length)."""
    rows, tokens = src.size(0), int((tgt_out != PAD).sum())
    return ParallelBatch(src, src_lens, tgt_in, tgt_out, rows, tokens, rows, tokens)


def tiny_config_dict(root: Path, **sections) -> dict:
    """A config for a model small enough to train in seconds on a CPU."""
    prefixes = {split: str(root / "corpus" / split) for split in ("train", "valid", "test")}
    raw = {
        "data": {"src_lang": "src", "tgt_lang": "tgt", **prefixes, "prepared": str(root / "prepared"),
                 "src_vocab_size": 40, "tgt_vocab_size": 40, "max_len": 30},
        "model": {"layers": 2, "hidden": 32, "embed": 16},
        "train": {"run_dir": str(root / "run"), "device": "cpu", "lr": 0.7, "epochs": 3, "batch_size": 16,
                  "max_steps": 12, "log_every": 4, "eval_every": 6, "save_every": 3, "eval_bleu_sentences": 10,
                  "bucket_pool": 4},
        "decode": {"beam": 3, "batch_size": 8, "max_len_a": 1.5, "max_len_b": 3},
    }
    for name, values in sections.items():
        raw[name].update(values)
    return raw


def tiny_config(root: Path, **sections):
    return config_from_dict(tiny_config_dict(root, **sections))


@pytest.fixture(scope="session")
def toy_workspace(tmp_path_factory) -> Path:
    """A folder with corpus/ and prepared/ (the toy corpus, preprocessed)."""
    from nmt.data.prepare import prepare

    root = tmp_path_factory.mktemp("toy")
    write_toy_corpus(root / "corpus")
    prepare(tiny_config(root).data, root / "prepared")
    return root


@pytest.fixture
def workspace(toy_workspace, tmp_path) -> Path:
    """A fresh folder sharing the session's corpus and prepared data (read-only use)."""
    for name in ("corpus", "prepared"):
        (tmp_path / name).symlink_to(toy_workspace / name)
    return tmp_path


@pytest.fixture(scope="session")
def trained_run(toy_workspace, tmp_path_factory) -> Path:
    """A run folder with best/ and last/ from a few CPU steps on the toy corpus."""
    from nmt.train.start import train

    root = tmp_path_factory.mktemp("trained")
    for name in ("corpus", "prepared"):
        (root / name).symlink_to(toy_workspace / name)
    train(tiny_config(root), stream=open("/dev/null", "w"))
    return root / "run"


@pytest.fixture(scope="session")
def attention_run(toy_workspace, tmp_path_factory) -> Path:
    """Like trained_run, for the tiny model with (general) attention: what attention plots need."""
    from nmt.train.start import train

    root = tmp_path_factory.mktemp("attention")
    for name in ("corpus", "prepared"):
        (root / name).symlink_to(toy_workspace / name)
    train(tiny_config(root, model={"attention": "general"}), stream=open("/dev/null", "w"))
    return root / "run"


@pytest.fixture
def copy_of_run(trained_run, tmp_path) -> Path:
    """A private copy of the trained run, for tests that damage it."""
    target = tmp_path / "run"
    shutil.copytree(trained_run, target, symlinks=True)
    return target


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def messages():
    """What the toolkit logs (the `nmt` logger: warnings, evaluations...) during the test, as text."""
    stream, logger = io.StringIO(), logging.getLogger("nmt")
    handler, level = logging.StreamHandler(stream), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)
