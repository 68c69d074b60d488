"""`nmt preprocess`: raw parallel text -> a prepared-data folder.

The folder holds:
  spm.model (joint) or src.model + tgt.model   SentencePiece models
  {split}.{src,tgt}.ids.npy                     all token ids of a side, one flat array
  {split}.{src,tgt}.offsets.npy                 sentence i is ids[offsets[i]:offsets[i+1]]
  {split}.{src,tgt}.txt                         the raw text (valid/test), the BLEU references
  manifest.json                                 counts, vocabulary sizes, what was filtered and why
The arrays are plain .npy files, memory-mapped when read and never unpickled. The folder is
built under a temporary name and renamed into place, so a crash leaves no half-written folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import nmt
from nmt.config import DataConfig
from nmt.data.corpus import corpus_paths, read_parallel
from nmt.data.tokenizer import Tokenizer, train_sentencepiece
from nmt.errors import DataError
from nmt.files import read_json

SPLITS = ("train", "valid", "test")
log = logging.getLogger("nmt")
MANIFEST = "manifest.json"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def write_ids(folder: Path, name: str, sequences: list[list[int]], vocab_size: int) -> None:
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for s in sequences for t in s), dtype=token_dtype(vocab_size), count=int(offsets[-1]))
    np.save(folder / f"{name}.ids.npy", flat, allow_pickle=False)
    np.save(folder / f"{name}.offsets.npy", offsets, allow_pickle=False)


def filter_pairs(src_ids, tgt_ids, *, max_len: int, max_ratio: float, dedupe: bool, src_text, tgt_text):
    """Indices of the training pairs to keep, and a count of each reason a pair was dropped."""
    keep, dropped, seen = [], Counter(), set()
    for i, (s, t) in enumerate(zip(src_ids, tgt_ids)):
        if not s or not t:
            dropped["empty side"] += 1
        elif len(s) > max_len or len(t) > max_len:
            dropped[f"longer than max_len={max_len} tokens"] += 1
        elif max(len(s), len(t)) / min(len(s), len(t)) > max_ratio:
            dropped[f"length ratio above max_len_ratio={max_ratio}"] += 1
        elif dedupe and (src_text[i], tgt_text[i]) in seen:
            dropped["duplicate pair"] += 1
        else:
            if dedupe:
                seen.add((src_text[i], tgt_text[i]))
            keep.append(i)
    return keep, dict(dropped)


def _train_tokenizers(folder: Path, cfg: DataConfig, train_src, train_tgt) -> tuple[Tokenizer, Tokenizer]:
    options = dict(model_type=cfg.spm_model_type, character_coverage=cfg.character_coverage,
                   max_sentences=cfg.spm_max_sentences)
    if cfg.joint_vocab:
        if cfg.src_vocab_size != cfg.tgt_vocab_size:
            raise DataError("a joint vocabulary needs data.src_vocab_size == data.tgt_vocab_size")
        train_sentencepiece(train_src + train_tgt, folder / "spm.model", vocab_size=cfg.src_vocab_size, **options)
        joint = Tokenizer(folder / "spm.model")
        return joint, joint
    train_sentencepiece(train_src, folder / "src.model", vocab_size=cfg.src_vocab_size, **options)
    train_sentencepiece(train_tgt, folder / "tgt.model", vocab_size=cfg.tgt_vocab_size, **options)
    return Tokenizer(folder / "src.model"), Tokenizer(folder / "tgt.model")


def tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """The (source, target) SentencePiece models of a prepared-data or checkpoint folder."""
    if (folder / "spm.model").exists():
        return folder / "spm.model", folder / "spm.model"
    return folder / "src.model", folder / "tgt.model"


def _read_splits(cfg: DataConfig) -> dict[str, tuple[list[str], list[str]]]:
    if cfg.train is None or cfg.valid is None:
        raise DataError("preprocess needs a train and a valid corpus: set data.train and data.valid "
                        "(prefixes such as data/tatoeba-en-fr/train) or pass --train and --valid")
    texts = {}
    for split in SPLITS:
        prefix = getattr(cfg, split)
        if prefix is None:
            continue
        paths = corpus_paths(prefix, cfg.src_lang, cfg.tgt_lang)
        src, tgt = read_parallel(*paths)
        if split == "train":
            for path, lines in zip(paths, (src, tgt)):
                if not any(lines):
                    raise DataError(f"{path} holds no text, only {len(lines)} empty line(s) (after removing "
                                    f"control characters): a training corpus needs one sentence per line")
        if cfg.lowercase:
            src, tgt = [s.lower() for s in src], [t.lower() for t in tgt]
        texts[split] = (src, tgt)
    return texts


def _check_output(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an output folder that would destroy something: a file, a folder that holds the
    corpus being read, or (even with --overwrite) a folder that preprocess did not write."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file: name a folder for the prepared data")
    for path in inputs:
        inside = Path(os.path.abspath(out)) in Path(os.path.abspath(path)).parents  # as written ...
        if inside or out.resolve() in path.resolve().parents:  # ... and after links
            raise DataError(f"the output folder {out} holds {path}, which preprocess reads: "
                            f"choose another output folder (--out or data.prepared)")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out} already exists and is not empty: choose another output folder or pass --overwrite")
        if not (out / MANIFEST).is_file():
            raise DataError(f"{out} is not a prepared-data folder (no {MANIFEST}): --overwrite replaces only a "
                            f"folder that nmt preprocess wrote; choose another output folder")


def prepare(cfg: DataConfig, out_dir: str | Path, *, overwrite: bool = False) -> dict:
    """Tokenize, filter and store a corpus; returns the manifest."""
    out = Path(out_dir)
    _check_output(out, [p for prefix in (cfg.train, cfg.valid, cfg.test) if prefix
                        for p in corpus_paths(prefix, cfg.src_lang, cfg.tgt_lang)], overwrite)
    texts = _read_splits(cfg)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.resolve().name}.tmp-", dir=out.parent) as tmp:
            manifest = _write_folder(Path(tmp), cfg, texts)
            _move_into_place(Path(tmp), out)
    except OSError as e:
        where = e.filename or out
        raise DataError(f"cannot write the prepared data to {where}: {e.strerror}; free space or fix "
                        f"permissions, or choose another output folder") from None
    return manifest


def _write_folder(folder: Path, cfg: DataConfig, texts: dict) -> dict:
    """Train the tokenizers, encode and filter every split into `folder`; returns the manifest."""
    started = time.time()
    log.info(f"training SentencePiece ({'joint' if cfg.joint_vocab else 'separate'}, {cfg.spm_model_type})")
    src_tok, tgt_tok = _train_tokenizers(folder, cfg, *texts["train"])
    manifest = {
        "nmt_version": nmt.__version__,
        "src_lang": cfg.src_lang, "tgt_lang": cfg.tgt_lang,
        "joint_vocab": cfg.joint_vocab,
        "src_vocab_size": src_tok.vocab_size, "tgt_vocab_size": tgt_tok.vocab_size,
        "src_tokenizer_sha256": src_tok.checksum, "tgt_tokenizer_sha256": tgt_tok.checksum,
        "data_config": cfg.__dict__,
        "splits": {},
    }
    for split, (src_text, tgt_text) in texts.items():
        src_ids, tgt_ids = src_tok.encode(src_text), tgt_tok.encode(tgt_text)
        info = {"pairs_read": len(src_ids)}
        if split == "train":
            keep, dropped = filter_pairs(src_ids, tgt_ids, max_len=cfg.max_len, max_ratio=cfg.max_len_ratio,
                                         dedupe=cfg.dedupe_train, src_text=src_text, tgt_text=tgt_text)
            if not keep:
                raise DataError(f"every training pair was filtered out ({dropped}): raise data.max_len or data.max_len_ratio")
            src_ids = [src_ids[i] for i in keep]
            tgt_ids = [tgt_ids[i] for i in keep]
            info["dropped"] = dropped
        else:
            (folder / f"{split}.src.txt").write_text("".join(s + "\n" for s in src_text), encoding="utf-8")
            (folder / f"{split}.tgt.txt").write_text("".join(t + "\n" for t in tgt_text), encoding="utf-8")
        write_ids(folder, f"{split}.src", src_ids, src_tok.vocab_size)
        write_ids(folder, f"{split}.tgt", tgt_ids, tgt_tok.vocab_size)
        info.update(pairs=len(src_ids), src_tokens=sum(map(len, src_ids)), tgt_tokens=sum(map(len, tgt_ids)),
                    src_unk=sum(s.count(1) for s in src_ids), tgt_unk=sum(t.count(1) for t in tgt_ids))
        manifest["splits"][split] = info
        log.info(f"{split}: {info['pairs']} pairs kept of {info['pairs_read']}"
                 + (f", dropped {info['dropped']}" if info.get("dropped") else ""))
    manifest["seconds"] = round(time.time() - started, 2)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def _move_into_place(folder: Path, out: Path) -> None:
    """Rename the finished `folder` to `out`, replacing an earlier prepared folder there."""
    if out.exists():
        old = out.parent / f".{out.resolve().name}.old"
        out.rename(old)
        folder.rename(out)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        folder.rename(out)
    folder.mkdir()  # TemporaryDirectory removes its (now empty) folder on exit


MANIFEST_KEYS = {"src_vocab_size": int, "tgt_vocab_size": int, "splits": dict}


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataError(f"{folder} is not a prepared-data folder (no {MANIFEST}): run nmt preprocess first")
    return read_json(path, MANIFEST_KEYS, error=DataError, fix="run nmt preprocess again")
