"""Streaming preprocess (nmt/data/stream.py, filtering.py, ids.py) against the in-memory one it replaced.

The reference below is the old `nmt preprocess` in memory, kept here as the oracle: read every
split whole (read_parallel), train SentencePiece on the list of lines, encode, filter with a set
of whole sentence pairs, np.save. Streaming must give exactly its files, byte for byte, and its
manifest (except the time it took), whatever the chunk size and the number of worker processes.
The reference calls today's read_parallel, train_sentencepiece (given a list, as before) and
write_ids (moved to nmt/data/ids.py unchanged); that these still behave as at the merge base was
checked once at scale, against the merge base's own code (a15dddd) on 1M generated pairs: the
same files byte for byte (benchmarks/README.md, "Preprocessing at the paper's scale").
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nmt.config import config_from_dict
from nmt.data import stream
from nmt.data.corpus import BOM, corpus_paths, read_parallel
from nmt.data.filtering import DigestSet
from nmt.data.ids import NpyAppender, write_ids
from nmt.data.prepare import MANIFEST, prepare
from nmt.data.tokenizer import Tokenizer, train_sentencepiece
from nmt.errors import DataError
from tests.conftest import tiny_config_dict, toy_translation, write_toy_corpus

# --- the reference: the in-memory preprocess ------------------------------------------------------


def reference_filter(src_ids, tgt_ids, src_text, tgt_text, *, max_len, max_ratio, dedupe):
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


def reference_prepare(cfg, folder: Path) -> dict:
    """The old _read_splits + _write_folder, in memory; returns the manifest's "splits"."""
    folder.mkdir()
    texts = {}
    for split in ("train", "valid", "test"):
        if getattr(cfg, split):
            src, tgt = read_parallel(*corpus_paths(getattr(cfg, split), cfg.src_lang, cfg.tgt_lang))
            texts[split] = ([s.lower() for s in src], [t.lower() for t in tgt]) if cfg.lowercase else (src, tgt)
    options = dict(model_type=cfg.spm_model_type, character_coverage=cfg.character_coverage,
                   max_sentences=cfg.spm_max_sentences)
    train_src, train_tgt = texts["train"]
    if cfg.joint_vocab:
        train_sentencepiece(train_src + train_tgt, folder / "spm.model", vocab_size=cfg.src_vocab_size, **options)
        src_tok = tgt_tok = Tokenizer(folder / "spm.model")
    else:
        train_sentencepiece(train_src, folder / "src.model", vocab_size=cfg.src_vocab_size, **options)
        train_sentencepiece(train_tgt, folder / "tgt.model", vocab_size=cfg.tgt_vocab_size, **options)
        src_tok, tgt_tok = Tokenizer(folder / "src.model"), Tokenizer(folder / "tgt.model")
    splits = {}
    for split, (src_text, tgt_text) in texts.items():
        src_ids, tgt_ids = src_tok.encode(src_text), tgt_tok.encode(tgt_text)
        info = {"pairs_read": len(src_ids)}
        if split == "train":
            keep, dropped = reference_filter(src_ids, tgt_ids, src_text, tgt_text, max_len=cfg.max_len,
                                             max_ratio=cfg.max_len_ratio, dedupe=cfg.dedupe_train)
            src_ids, tgt_ids = [src_ids[i] for i in keep], [tgt_ids[i] for i in keep]
            info["dropped"] = dropped
        else:
            (folder / f"{split}.src.txt").write_text("".join(s + "\n" for s in src_text), encoding="utf-8")
            (folder / f"{split}.tgt.txt").write_text("".join(t + "\n" for t in tgt_text), encoding="utf-8")
        write_ids(folder, f"{split}.src", src_ids, src_tok.vocab_size)
        write_ids(folder, f"{split}.tgt", tgt_ids, tgt_tok.vocab_size)
        info.update(pairs=len(src_ids), src_tokens=sum(map(len, src_ids)), tgt_tokens=sum(map(len, tgt_ids)),
                    src_unk=sum(s.count(1) for s in src_ids), tgt_unk=sum(t.count(1) for t in tgt_ids))
        splits[split] = info
    return splits


def assert_same_folders(streamed: Path, reference: Path, reference_splits: dict) -> None:
    names = sorted(p.name for p in streamed.iterdir())
    assert names == sorted([p.name for p in reference.iterdir()] + [MANIFEST])
    for name in names:
        if name != MANIFEST:
            assert (streamed / name).read_bytes() == (reference / name).read_bytes(), name
    manifest = json.loads((streamed / MANIFEST).read_text())
    # the same counts and reasons, in the same order
    assert json.dumps(manifest["splits"]) == json.dumps(reference_splits)


# --- a corpus with every kind of pair the filters handle ---------------------------------------------


def awkward_corpus(folder: Path, pairs: int = 400) -> Path:
    """The toy corpus, with duplicates (some only after cleaning), empty sides, pairs too long and
    of a wild length ratio, scattered so that they fall in different chunks."""
    write_toy_corpus(folder, sizes=(pairs, 30, 30), seed=3)
    src = (folder / "train.src").read_text(encoding="utf-8").split("\n")[:-1]
    tgt = (folder / "train.tgt").read_text(encoding="utf-8").split("\n")[:-1]
    long_src = " ".join(["wa0 wb1 wc2"] * 20)
    extra = [(src[5], tgt[5]), (src[5] + "\r", " " + tgt[5]), (BOM + src[9].replace(" ", "  "), tgt[9] + "\t"),
             ("", tgt[3]), (src[4], " \t"), ("\x00", ""), (long_src, toy_translation(long_src)),
             ("wa0", toy_translation("wa0 wb1 wc2 wd3 we4 wf5")), (src[5], tgt[5]), (long_src, toy_translation(long_src))]
    for k, (s, t) in enumerate(extra):
        at = 7 + k * (len(src) // len(extra))
        src.insert(at, s)
        tgt.insert(at, t)
    (folder / "train.src").write_bytes(BOM.encode() + "\n".join(src).encode() + b"\n")
    (folder / "train.tgt").write_bytes("\r\n".join(tgt).encode())  # Windows endings, no final newline
    return folder


def config(root: Path, **data):
    raw = tiny_config_dict(root)
    raw["data"].update(data)
    return config_from_dict(raw).data


@pytest.mark.parametrize("joint, lowercase, dedupe, chunk_pairs, workers", [
    (False, False, True, 37, 2),   # several chunks, a pool of two workers
    (True, True, True, 37, 2),     # joint vocabulary, lowercased
    (False, False, False, 100_000, 1),  # one chunk, in this process; no dedupe
    (True, False, True, 50, 1),    # several chunks, in this process
], ids=["separate-pool", "joint-lowercase-pool", "one-chunk-no-dedupe", "joint-chunks-in-process"])
def test_streaming_gives_the_files_of_the_in_memory_path(tmp_path, joint, lowercase, dedupe, chunk_pairs, workers):
    awkward_corpus(tmp_path / "corpus")
    cfg = config(tmp_path, joint_vocab=joint, lowercase=lowercase, dedupe_train=dedupe, workers=workers, max_len=40,
                 src_vocab_size=64 if joint else 40, tgt_vocab_size=64 if joint else 40)
    reference = reference_prepare(cfg, tmp_path / "reference")
    manifest = prepare(cfg, tmp_path / "prepared", chunk_pairs=chunk_pairs)
    assert_same_folders(tmp_path / "prepared", tmp_path / "reference", reference)
    dropped = manifest["splits"]["train"]["dropped"]
    assert set(dropped) == ({"empty side", "longer than max_len=40 tokens", "length ratio above max_len_ratio=3.0"}
                            | ({"duplicate pair"} if dedupe else set()))


def test_a_generated_corpus_of_many_chunks_prepares_as_in_memory(tmp_path, monkeypatch):
    """scripts/make_scale_corpus.py on the toy corpus: 3,000 long pairs in 12 chunks, two workers."""
    from scripts import make_scale_corpus

    write_toy_corpus(tmp_path / "seed", sizes=(300, 30, 30))
    monkeypatch.setattr(make_scale_corpus, "BLOCK", 700)  # several of the generator's blocks too
    make_scale_corpus.write_corpus(str(tmp_path / "seed" / "train"), ("src", "tgt"), 3000, tmp_path / "corpus" / "train", 1)
    for split in ("valid", "test"):
        for side in ("src", "tgt"):
            (tmp_path / "corpus" / f"{split}.{side}").write_bytes((tmp_path / "seed" / f"{split}.{side}").read_bytes())
    cfg = config(tmp_path, workers=2, max_len=60)
    reference = reference_prepare(cfg, tmp_path / "reference")
    prepare(cfg, tmp_path / "prepared", chunk_pairs=250)
    assert_same_folders(tmp_path / "prepared", tmp_path / "reference", reference)
    assert reference["train"]["dropped"]["duplicate pair"] > 0


def test_make_scale_corpus_is_deterministic_and_its_prefixes_agree(tmp_path, monkeypatch):
    from scripts import make_scale_corpus

    write_toy_corpus(tmp_path / "seed", sizes=(300, 1, 1))
    monkeypatch.setattr(make_scale_corpus, "BLOCK", 100)
    seed = str(tmp_path / "seed" / "train")
    for name, pairs, rng_seed in (("a", 1000, 1), ("b", 1000, 1), ("prefix", 430, 1), ("other", 1000, 2)):
        counts = make_scale_corpus.write_corpus(seed, ("src", "tgt"), pairs, tmp_path / name / "train", rng_seed)
        assert counts.sum() == pairs
    text = {name: (tmp_path / name / "train.src").read_text() for name in ("a", "b", "prefix", "other")}
    assert text["a"] == text["b"] != text["other"]
    assert text["a"].startswith(text["prefix"])
    lengths = np.array([len(line.split()) for line in text["a"].splitlines()])
    assert np.mean((lengths >= 17) & (lengths <= 33)) > 0.5  # the bulk near 20-30 words
    assert lengths.max() >= 100


# --- the pieces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64])
@pytest.mark.parametrize("sizes", [[], [0], [5], [3, 0, 7, 1000]])
def test_npy_appender_writes_what_np_save_writes(tmp_path, dtype, sizes):
    values = np.arange(sum(sizes), dtype=dtype) * 7 % 5003
    appender = NpyAppender(tmp_path / "appended.npy", dtype)
    start = 0
    for size in sizes:
        appender.append(values[start:start + size])
        start += size
    appender.close()
    np.save(tmp_path / "saved.npy", values, allow_pickle=False)
    assert (tmp_path / "appended.npy").read_bytes() == (tmp_path / "saved.npy").read_bytes()


def test_npy_header_keeps_its_length_for_any_array_length():
    from nmt.data.ids import _npy_header

    assert {len(_npy_header(np.dtype(np.uint16), n)) for n in (0, 9, 10**6, 10**12, 2**62)} == {128}


def test_digest_set_finds_repeats_within_and_across_chunks():
    rng = np.random.default_rng(0)
    pool = np.frombuffer(rng.bytes(16 * 500), dtype="S16")
    digests = DigestSet()
    seen = set()
    for _ in range(20):
        chunk = pool[rng.integers(0, len(pool), size=60)]
        expected = []
        for d in chunk.tolist():
            expected.append(d not in seen)
            seen.add(d)
        assert digests.add(chunk).tolist() == expected
    assert len(digests) == len(seen)


def test_spm_lines_keeps_every_line_up_to_the_limit_and_a_fixed_sample_above(tmp_path):
    lines = [f"line {i}" if i % 4 else " \t" for i in range(1000)]  # every fourth line blank
    (tmp_path / "a.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    scan = stream.scan_side(tmp_path / "a.txt")
    assert (scan.lines, scan.text_lines) == (1000, 750)
    text = [line for line in lines if line.strip()]
    assert list(stream.spm_lines([scan], lowercase=False, limit=750, chunk_lines=64)) == text
    sample = list(stream.spm_lines([scan], lowercase=False, limit=200, chunk_lines=64))
    assert len(sample) == 200 and sample == [line for line in text if line in set(sample)]  # in file order
    assert sample == list(stream.spm_lines([scan], lowercase=False, limit=200, chunk_lines=1000))


def test_a_corpus_above_spm_max_sentences_gives_the_same_vocabulary_every_time(tmp_path):
    """SentencePiece's own sampler draws a new seed each run; the fixed sample does not."""
    write_toy_corpus(tmp_path / "corpus", sizes=(400, 10, 10))
    cfg = config(tmp_path, spm_max_sentences=150)
    first = prepare(cfg, tmp_path / "one")
    second = prepare(cfg, tmp_path / "two")
    assert first["src_tokenizer_sha256"] == second["src_tokenizer_sha256"]
    assert (tmp_path / "one" / "train.src.ids.npy").read_bytes() == (tmp_path / "two" / "train.src.ids.npy").read_bytes()


def test_errors_deep_in_a_file_name_the_right_line(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "BLOCK_BYTES", 64)  # many blocks
    lines = [f"sentence number {i}" for i in range(300)]
    path = tmp_path / "train.src"
    path.write_bytes("\n".join(lines[:250]).encode() + b"\ncaf\xe9\n" + "\n".join(lines[251:]).encode())
    with pytest.raises(DataError, match=r"train.src line 251 is not valid UTF-8 \(byte 0xe9\)"):
        stream.scan_side(path)
    path.write_bytes(("\n".join(lines) + "\n").encode())
    scan = stream.scan_side(path)
    assert (scan.lines, scan.text_lines) == (300, 300)
    chunks = list(stream.line_chunks(path, 7))
    assert b"\n".join(chunks).decode().split("\n") == lines and len(chunks) == 43
