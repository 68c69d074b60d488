"""Token ids on disk: the `.npy` arrays of a prepared-data folder, written whole or piece by piece.

A side of a split is two 1-D arrays: `{name}.ids.npy`, every token id of every sentence in one
flat array, and `{name}.offsets.npy` (int64), where sentence i is ids[offsets[i]:offsets[i+1]].
`write_ids` writes a split held in memory; `IdsAppender` writes one that arrives in chunks, so
that preprocess never holds a large training split, and its files are byte for byte the ones
`write_ids` (np.save) would write for the whole split.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from nmt.data.tokenizer import UNK


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def write_ids(folder: Path, name: str, sequences: list[list[int]], vocab_size: int) -> None:
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for s in sequences for t in s), dtype=token_dtype(vocab_size), count=int(offsets[-1]))
    np.save(folder / f"{name}.ids.npy", flat, allow_pickle=False)
    np.save(folder / f"{name}.offsets.npy", offsets, allow_pickle=False)


def _npy_header(dtype: np.dtype, length: int) -> bytes:
    """The header np.save writes before a 1-D C-ordered array of `length` items of `dtype`."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (length,)}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


class NpyAppender:
    """A 1-D .npy file written as its items arrive.

    numpy pads a header to the same length whatever the length of the array's first axis (so that
    a file can grow in place), so a header for 0 items goes first and the real one replaces it at
    `close`; the data in between is the raw items, exactly as np.save lays them out.
    """

    def __init__(self, path: Path, dtype: np.dtype):
        self.dtype, self.count = np.dtype(dtype), 0
        self.file = open(path, "wb")
        self.header_size = self.file.write(_npy_header(self.dtype, 0))

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self.file.write(memoryview(values).cast("B"))
        self.count += len(values)

    def close(self) -> None:
        header = _npy_header(self.dtype, self.count)
        assert len(header) == self.header_size, "numpy's .npy header changed length with the array's"
        self.file.seek(0)
        self.file.write(header)
        self.file.close()


class IdsAppender:
    """One side of a split, written chunk by chunk: the kept sentences' ids and their offsets."""

    def __init__(self, folder: Path, name: str, vocab_size: int):
        self.ids = NpyAppender(folder / f"{name}.ids.npy", token_dtype(vocab_size))
        self.offsets = NpyAppender(folder / f"{name}.offsets.npy", np.int64)
        self.offsets.append(np.zeros(1, dtype=np.int64))
        self.sentences = self.tokens = self.unk = 0

    def add(self, ids: np.ndarray, lengths: np.ndarray, keep: np.ndarray) -> None:
        """Append the sentences of a chunk where `keep` is True: `ids` holds the whole chunk's
        ids, sentence after sentence, of the given `lengths`."""
        kept_ids = ids[np.repeat(keep, lengths)]
        self.ids.append(kept_ids)
        self.offsets.append(self.tokens + np.cumsum(lengths[keep]))
        self.sentences += int(keep.sum())
        self.tokens += len(kept_ids)
        self.unk += int(np.count_nonzero(kept_ids == UNK))

    def close(self) -> None:
        self.ids.close()
        self.offsets.close()

    def __enter__(self) -> "IdsAppender":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:  # the folder is thrown away: only release the files
            self.ids.file.close()
            self.offsets.file.close()
