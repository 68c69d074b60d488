"""`nmt preprocess`: raw parallel text -> a prepared-data folder.

The folder holds:
  spm.model (joint) or src.model + tgt.model   SentencePiece models
  {split}.{src,tgt}.ids.npy                     all token ids of a side, one flat array
  {split}.{src,tgt}.offsets.npy                 sentence i is ids[offsets[i]:offsets[i+1]]
  {split}.{src,tgt}.txt                         the raw text (valid/test), the BLEU references
  manifest.json                                 counts, vocabulary sizes, what was filtered and why
The arrays are plain .npy files, memory-mapped when read and never unpickled. The folder is
built under a temporary name and renamed into place, so a crash leaves no half-written folder.

The training split is streamed (nmt/data/stream.py): checked and counted first, then read for
SentencePiece, then encoded a chunk at a time by one worker process per core and filtered
(nmt/data/filtering.py) as the chunks come back, its ids appended to the files (nmt/data/ids.py),
so memory does not grow with the corpus beyond 16 bytes a distinct pair (the duplicate check).
Valid and test are small and stay in memory.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import closing
from pathlib import Path

import nmt
from nmt.config import DataConfig
from nmt.data.corpus import corpus_paths, read_parallel
from nmt.data.filtering import PairFilter
from nmt.data.ids import IdsAppender, token_dtype, write_ids  # noqa: F401 (write_ids: part of this module's API)
from nmt.data.stream import CHUNK_PAIRS, SideScan, encode_chunks, scan_side, spm_lines
from nmt.data.tokenizer import Tokenizer, train_sentencepiece
from nmt.errors import DataError
from nmt.files import read_json

SPLITS = ("train", "valid", "test")
log = logging.getLogger("nmt")
MANIFEST = "manifest.json"


def _train_tokenizers(folder: Path, cfg: DataConfig, train: tuple[SideScan, SideScan]) -> tuple[Tokenizer, Tokenizer]:
    options = dict(model_type=cfg.spm_model_type, character_coverage=cfg.character_coverage,
                   max_sentences=cfg.spm_max_sentences)

    def lines(*sides: SideScan):
        return spm_lines(list(sides), lowercase=cfg.lowercase, limit=cfg.spm_max_sentences)

    if cfg.joint_vocab:
        if cfg.src_vocab_size != cfg.tgt_vocab_size:
            raise DataError("a joint vocabulary needs data.src_vocab_size == data.tgt_vocab_size")
        train_sentencepiece(lines(*train), folder / "spm.model", vocab_size=cfg.src_vocab_size, **options)
        joint = Tokenizer(folder / "spm.model")
        return joint, joint
    train_sentencepiece(lines(train[0]), folder / "src.model", vocab_size=cfg.src_vocab_size, **options)
    train_sentencepiece(lines(train[1]), folder / "tgt.model", vocab_size=cfg.tgt_vocab_size, **options)
    return Tokenizer(folder / "src.model"), Tokenizer(folder / "tgt.model")


def tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """The (source, target) SentencePiece models of a prepared-data or checkpoint folder."""
    if (folder / "spm.model").exists():
        return folder / "spm.model", folder / "spm.model"
    return folder / "src.model", folder / "tgt.model"


def _scan_train(cfg: DataConfig) -> tuple[SideScan, SideScan]:
    """Check the training corpus (as read_parallel and the empty-side check did) without keeping it."""
    src_path, tgt_path = corpus_paths(cfg.train, cfg.src_lang, cfg.tgt_lang)
    src, tgt = scan_side(src_path), scan_side(tgt_path)
    if src.lines != tgt.lines:
        raise DataError(f"{src_path} has {src.lines} lines but {tgt_path} has {tgt.lines}: "
                        f"line N of one side must translate line N of the other")
    for side in (src, tgt):
        if not side.text_lines:
            raise DataError(f"{side.path} holds no text, only {side.lines} empty line(s) (after removing "
                            f"control characters): a training corpus needs one sentence per line")
    return src, tgt


def _read_corpus(cfg: DataConfig) -> tuple[tuple[SideScan, SideScan], dict[str, tuple[list[str], list[str]]]]:
    """The checked training corpus, and the valid and test texts (small: read whole)."""
    if cfg.train is None or cfg.valid is None:
        raise DataError("preprocess needs a train and a valid corpus: set data.train and data.valid "
                        "(prefixes such as data/tatoeba-en-fr/train) or pass --train and --valid")
    train = _scan_train(cfg)
    texts = {}
    for split in SPLITS[1:]:
        prefix = getattr(cfg, split)
        if prefix is None:
            continue
        src, tgt = read_parallel(*corpus_paths(prefix, cfg.src_lang, cfg.tgt_lang))
        if cfg.lowercase:
            src, tgt = [s.lower() for s in src], [t.lower() for t in tgt]
        texts[split] = (src, tgt)
    return train, texts


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


def prepare(cfg: DataConfig, out_dir: str | Path, *, overwrite: bool = False, chunk_pairs: int = CHUNK_PAIRS) -> dict:
    """Tokenize, filter and store a corpus; returns the manifest. `chunk_pairs`: the training
    pairs a worker encodes at a time (the output does not depend on it)."""
    out = Path(out_dir)
    _check_output(out, [p for prefix in (cfg.train, cfg.valid, cfg.test) if prefix
                        for p in corpus_paths(prefix, cfg.src_lang, cfg.tgt_lang)], overwrite)
    train, texts = _read_corpus(cfg)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.resolve().name}.tmp-", dir=out.parent) as tmp:
            manifest = _write_folder(Path(tmp), cfg, train, texts, chunk_pairs)
            _move_into_place(Path(tmp), out)
    except OSError as e:
        where = e.filename or out
        raise DataError(f"cannot write the prepared data to {where}: {e.strerror}; free space or fix "
                        f"permissions, or choose another output folder") from None
    return manifest


def _write_folder(folder: Path, cfg: DataConfig, train: tuple[SideScan, SideScan], texts: dict, chunk_pairs: int) -> dict:
    """Train the tokenizers, encode and filter every split into `folder`; returns the manifest."""
    started = time.time()
    log.info(f"training SentencePiece ({'joint' if cfg.joint_vocab else 'separate'}, {cfg.spm_model_type})")
    src_tok, tgt_tok = _train_tokenizers(folder, cfg, train)
    _return_freed_memory()
    log.info(f"SentencePiece trained in {time.time() - started:.0f} s")
    manifest = {
        "nmt_version": nmt.__version__,
        "src_lang": cfg.src_lang, "tgt_lang": cfg.tgt_lang,
        "joint_vocab": cfg.joint_vocab,
        "src_vocab_size": src_tok.vocab_size, "tgt_vocab_size": tgt_tok.vocab_size,
        "src_tokenizer_sha256": src_tok.checksum, "tgt_tokenizer_sha256": tgt_tok.checksum,
        # data.workers is left out: how many processes encoded the corpus does not change it
        "data_config": {key: value for key, value in cfg.__dict__.items() if key != "workers"},
        "splits": {},
    }
    splits = {"train": _write_train(folder, cfg, train, (src_tok, tgt_tok), chunk_pairs)}
    splits.update((split, _write_text_split(folder, split, *text, src_tok, tgt_tok)) for split, text in texts.items())
    for split, info in splits.items():
        manifest["splits"][split] = info
        log.info(f"{split}: {info['pairs']} pairs kept of {info['pairs_read']}"
                 + (f", dropped {info['dropped']}" if info.get("dropped") else ""))
    manifest["seconds"] = round(time.time() - started, 2)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def _return_freed_memory() -> None:
    """Give the memory SentencePiece's training freed back to the system: glibc keeps a freed heap
    for reuse (about 1 GB after 2M sentences), which encoding the corpus would not need."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _write_train(folder: Path, cfg: DataConfig, train: tuple[SideScan, SideScan], tokenizers, chunk_pairs: int) -> dict:
    """Encode, filter and write the training split a chunk at a time; returns its manifest entry."""
    pairs = PairFilter(max_len=cfg.max_len, max_ratio=cfg.max_len_ratio, dedupe=cfg.dedupe_train)
    src_tok, tgt_tok = tokenizers
    workers = 1 if train[0].lines <= chunk_pairs else cfg.workers or len(os.sched_getaffinity(0))
    log.info(f"train: encoding {train[0].lines:,} pairs with {workers} worker process(es)")
    chunks = encode_chunks(*train, (src_tok.path, tgt_tok.path), lowercase=cfg.lowercase, dedupe=cfg.dedupe_train,
                           dtype=token_dtype(max(src_tok.vocab_size, tgt_tok.vocab_size)),
                           chunk_pairs=chunk_pairs, workers=workers)
    with closing(chunks), IdsAppender(folder, "train.src", src_tok.vocab_size) as src_out, \
            IdsAppender(folder, "train.tgt", tgt_tok.vocab_size) as tgt_out:
        for chunk in chunks:
            keep = pairs.keep(chunk.src_lens, chunk.tgt_lens, chunk.digests)
            src_out.add(chunk.src_ids, chunk.src_lens, keep)
            tgt_out.add(chunk.tgt_ids, chunk.tgt_lens, keep)
            if pairs.read % (50 * chunk_pairs) == 0:
                log.info(f"train: {pairs.read:,} of {train[0].lines:,} pairs encoded")
        if pairs.read != train[0].lines:
            raise DataError(f"{train[0].path} or {train[1].path} changed while preprocess read them: run it again")
        dropped = pairs.dropped()
        if not src_out.sentences:
            raise DataError(f"every training pair was filtered out ({dropped}): raise data.max_len or data.max_len_ratio")
    return {"pairs_read": pairs.read, "dropped": dropped, "pairs": src_out.sentences,
            "src_tokens": src_out.tokens, "tgt_tokens": tgt_out.tokens, "src_unk": src_out.unk, "tgt_unk": tgt_out.unk}


def _write_text_split(folder: Path, split: str, src_text: list[str], tgt_text: list[str], src_tok: Tokenizer,
                      tgt_tok: Tokenizer) -> dict:
    """A valid or test split, in memory and never filtered: its ids and its raw text (the references)."""
    src_ids, tgt_ids = src_tok.encode(src_text), tgt_tok.encode(tgt_text)
    (folder / f"{split}.src.txt").write_text("".join(s + "\n" for s in src_text), encoding="utf-8")
    (folder / f"{split}.tgt.txt").write_text("".join(t + "\n" for t in tgt_text), encoding="utf-8")
    write_ids(folder, f"{split}.src", src_ids, src_tok.vocab_size)
    write_ids(folder, f"{split}.tgt", tgt_ids, tgt_tok.vocab_size)
    return {"pairs_read": len(src_ids), "pairs": len(src_ids), "src_tokens": sum(map(len, src_ids)),
            "tgt_tokens": sum(map(len, tgt_ids)), "src_unk": sum(s.count(1) for s in src_ids),
            "tgt_unk": sum(t.count(1) for t in tgt_ids)}


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
