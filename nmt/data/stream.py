"""The training split a chunk at a time: read, clean and encode a corpus larger than memory.

`nmt preprocess` reads the training files three times and never holds more than a few chunks:
  1. `scan_side` checks a file (readable, not empty, UTF-8) and counts its lines and the lines
     with text, before any slow work, so that a bad corpus fails at once with its file and line;
  2. `spm_lines` gives SentencePiece the lines it learns from;
  3. `encode_chunks` cleans, encodes and hashes both sides `chunk_pairs` lines at a time, in a
     pool of worker processes that each load the SentencePiece models once, and hands the chunks
     back in order.
Lines are cleaned exactly as `corpus.read_lines` cleans them (`clean_line`, after `split_lines`'
rules for line ends and the byte-order mark), so the result is what reading the whole corpus
into memory gives.
"""

from __future__ import annotations

import codecs
import itertools
import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from nmt.data.corpus import check_readable, clean_line, decode_utf8
from nmt.data.tokenizer import Tokenizer
from nmt.errors import DataError

BLOCK_BYTES = 1 << 24  # read 16 MiB at a time
CHUNK_PAIRS = 20_000  # sentence pairs a worker encodes at a time
# The seed of the sample SentencePiece learns from when there are more than data.spm_max_sentences
# lines: fixed, so that preprocessing a corpus twice gives the same vocabulary.
SAMPLE_SEED = 20140910
DIGEST = np.dtype("S16")


@dataclass(frozen=True)
class SideScan:
    path: Path
    lines: int
    text_lines: int  # lines that are not empty once cleaned
    has_text: np.ndarray  # one bit a line (np.packbits): whether it is one of those


def _blocks(path: Path) -> Iterator[bytes]:
    """The file's bytes in blocks of whole lines (about BLOCK_BYTES; the last one may lack its
    newline), without the byte-order mark that may open the file."""
    try:
        with open(path, "rb") as f:
            rest = f.read(len(codecs.BOM_UTF8))
            rest = rest[len(codecs.BOM_UTF8):] if rest == codecs.BOM_UTF8 else rest
            while data := f.read(BLOCK_BYTES):
                data = rest + data
                cut = data.rfind(b"\n") + 1
                if cut:
                    yield data[:cut]
                rest = data[cut:]
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    if rest:
        yield rest


def _has_text(line: str) -> bool:
    """Whether clean_line(line) is not empty; a printable line holds no white space but ' '."""
    return bool(line.strip(" ") if line.isprintable() else clean_line(line))


def scan_side(path: Path) -> SideScan:
    """Check one side of the training corpus and count its lines, as `read_lines` would see them."""
    check_readable(path)
    lines, has_text = 0, []
    for block in _blocks(path):
        text = decode_utf8(block, path, first_line=lines + 1)
        block_lines = text.split("\n")
        if not block_lines[-1]:
            block_lines.pop()  # the newline ending the block ends its last line
        has_text.append(np.fromiter(map(_has_text, block_lines), dtype=bool, count=len(block_lines)))
        lines += len(block_lines)
    if not lines:
        raise DataError(f"file {path} is empty: it must hold one sentence per line")
    flags = np.concatenate(has_text)
    return SideScan(path, lines, int(flags.sum()), np.packbits(flags))


def line_chunks(path: Path, size: int) -> Iterator[bytes]:
    """The file's lines, `size` at a time: each chunk is its lines joined by newlines (no final one)."""
    pending: list[bytes] = []
    for block in _blocks(path):
        lines = block.split(b"\n")
        if not lines[-1]:
            lines.pop()  # the newline ending the block ends its last line
        pending.extend(lines)
        while len(pending) >= size:
            yield b"\n".join(pending[:size])
            del pending[:size]
    if pending:
        yield b"\n".join(pending)


def clean_chunk(chunk: bytes, path: Path, first_line: int, lowercase: bool) -> list[str]:
    """The lines of a chunk, cleaned. clean_line trims a `\\r` before the newline as white space,
    as split_lines drops it as part of the line ending."""
    lines = [clean_line(line) for line in decode_utf8(chunk, path, first_line).split("\n")]
    return [line.lower() for line in lines] if lowercase else lines


def spm_lines(scans: list[SideScan], *, lowercase: bool, limit: int, chunk_lines: int = CHUNK_PAIRS) -> Iterator[str]:
    """The lines SentencePiece learns from, in file order: every line with text, or if there are
    more than `limit`, `limit` of them drawn uniformly with a fixed seed.

    The whole corpus was fed to SentencePiece before, which samples `limit` lines itself when
    given more; but its sampler draws a new seed every time (sentencepiece 0.2.3), so the
    vocabulary changed from one run to the next. Given at most `limit` lines, it keeps them all,
    in order, and the result is deterministic: identical to before wherever there are no more
    than `limit` lines, and a fixed sample (for this numpy version) where there are more.
    """
    total = sum(scan.text_lines for scan in scans)
    if total <= limit:
        for scan in scans:
            first_line = 1
            for chunk in line_chunks(scan.path, chunk_lines):
                yield from filter(None, clean_chunk(chunk, scan.path, first_line, lowercase))
                first_line += chunk.count(b"\n") + 1
        return
    chosen = np.sort(np.random.default_rng(SAMPLE_SEED).choice(total, size=limit, replace=False))
    seen = 0  # lines with text before this chunk, over all the files
    for scan in scans:
        has_text = np.unpackbits(scan.has_text, count=scan.lines).astype(bool)
        first = 0  # the chunk's first line, from 0
        for chunk in line_chunks(scan.path, chunk_lines):
            lines = chunk.split(b"\n")
            with_text = np.flatnonzero(has_text[first:first + len(lines)])  # of the chunk's lines
            low, high = np.searchsorted(chosen, [seen, seen + len(with_text)])
            for i in with_text[chosen[low:high] - seen].tolist():  # only the chosen lines are cleaned
                line = clean_line(decode_utf8(lines[i], scan.path, first + i + 1))
                yield line.lower() if lowercase else line
            seen += len(with_text)
            first += len(lines)


@dataclass
class EncodedChunk:
    """One chunk of training pairs, encoded."""

    src_ids: np.ndarray  # (tokens,) every source id of the chunk, sentence after sentence
    src_lens: np.ndarray  # (pairs,) int64
    tgt_ids: np.ndarray
    tgt_lens: np.ndarray
    digests: Optional[np.ndarray]  # (pairs,) S16: BLAKE2b of each pair's cleaned text; None without dedupe


_worker: dict = {}  # what a worker process keeps between chunks: its models and settings


def _start_worker(src_model: str, tgt_model: str, src_path: str, tgt_path: str, lowercase: bool,
                  dedupe: bool, dtype: str) -> None:
    """Load the models once per worker (the pool's initializer; also the single-process path)."""
    src = Tokenizer(src_model)
    tgt = src if tgt_model == src_model else Tokenizer(tgt_model)
    _worker.update(tokenizers=(src, tgt), paths=(Path(src_path), Path(tgt_path)), lowercase=lowercase,
                   dedupe=dedupe, dtype=np.dtype(dtype))


def _encode_side(tokenizer: Tokenizer, lines: list[str], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    ids = tokenizer.encode(lines, threads=1)  # one process per core already
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    return np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum())), lengths


def pair_digests(src: list[str], tgt: list[str]) -> np.ndarray:
    """(pairs,) 16-byte digests of the pairs' text; no cleaned line holds a newline, so the
    newline between the sides keeps ("a b", "c") and ("a", "b c") apart."""
    digests = b"".join(blake2b(f"{s}\n{t}".encode(), digest_size=DIGEST.itemsize).digest() for s, t in zip(src, tgt))
    return np.frombuffer(digests, dtype=DIGEST)


def encode_chunk(job: tuple[int, bytes, bytes]) -> EncodedChunk:
    """Clean, encode and hash the pairs of one chunk (`job`: its first line number and the
    chunk of each side)."""
    first_line, src_chunk, tgt_chunk = job
    (src_tok, tgt_tok), (src_path, tgt_path) = _worker["tokenizers"], _worker["paths"]
    src = clean_chunk(src_chunk, src_path, first_line, _worker["lowercase"])
    tgt = clean_chunk(tgt_chunk, tgt_path, first_line, _worker["lowercase"])
    if len(src) != len(tgt):
        raise DataError(f"{src_path} or {tgt_path} changed while preprocess read them: run it again")
    src_ids, src_lens = _encode_side(src_tok, src, _worker["dtype"])
    tgt_ids, tgt_lens = _encode_side(tgt_tok, tgt, _worker["dtype"])
    return EncodedChunk(src_ids, src_lens, tgt_ids, tgt_lens, pair_digests(src, tgt) if _worker["dedupe"] else None)


def _jobs(src: SideScan, tgt: SideScan, chunk_pairs: int) -> Iterator[tuple[int, bytes, bytes]]:
    first_line = 1
    for src_chunk, tgt_chunk in zip(line_chunks(src.path, chunk_pairs), line_chunks(tgt.path, chunk_pairs)):
        yield first_line, src_chunk, tgt_chunk
        first_line += chunk_pairs


def encode_chunks(src: SideScan, tgt: SideScan, models: tuple[Path, Path], *, lowercase: bool, dedupe: bool,
                  dtype: np.dtype, chunk_pairs: int = CHUNK_PAIRS, workers: int = 1) -> Iterator[EncodedChunk]:
    """Every chunk of the training pairs, encoded, in order, by `workers` processes (1: in this
    process). At most two chunks per worker are in flight, so memory does not grow with the corpus."""
    setup = (str(models[0]), str(models[1]), str(src.path), str(tgt.path), lowercase, dedupe, np.dtype(dtype).str)
    jobs = _jobs(src, tgt, chunk_pairs)
    if workers <= 1:
        _start_worker(*setup)
        try:
            yield from map(encode_chunk, jobs)
        finally:
            _worker.clear()
        return
    # spawn, not fork: a worker starts with its imports, not a copy of this process's memory. An
    # executor rather than a multiprocessing.Pool: a worker that dies (say, out of memory) breaks
    # it with an error, where a Pool would start another worker and wait forever.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=setup) as pool:
        pending: deque = deque()
        try:
            for job in jobs:
                pending.append(pool.submit(encode_chunk, job))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool:
            raise DataError("a preprocess worker process died (killed, or out of memory): "
                            "run again, with fewer workers (--set data.workers=1) if memory is short") from None
        finally:
            for future in pending:  # stopped early (an error here or in a worker): drop the rest
                future.cancel()
