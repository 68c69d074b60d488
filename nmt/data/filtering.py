"""Which training pairs preprocess keeps, decided a chunk at a time.

A pair is dropped, for the first of these reasons that applies: a side is empty; a side is
longer than max_len tokens; the longer side over the shorter is above max_len_ratio; the pair
repeats an earlier one (same cleaned text on both sides). Duplicates are found by a 16-byte
digest of each pair rather than its text, so the memory this takes is 16 bytes a distinct pair.
"""

from __future__ import annotations

import numpy as np

KEPT = -1


class DigestSet:
    """The digests of the pairs seen so far, in 256 sorted arrays by first byte: adding a chunk
    moves about 1/256 of the set, not all of it.

    Two different pairs get the same 16-byte BLAKE2b digest with probability about n^2 / 2^129 for
    n distinct pairs (the birthday bound): 2e-25 for 12M pairs. A collision would drop the later
    pair as a duplicate; nothing else. (8 bytes would halve the memory, at 4e-6 for 12M pairs.)
    """

    def __init__(self) -> None:
        self.buckets = [np.empty(0, dtype="S16") for _ in range(256)]

    def add(self, digests: np.ndarray) -> np.ndarray:
        """(n,) bool: True where a digest is new, seen neither before nor earlier in `digests`;
        the new ones join the set."""
        new = np.zeros(len(digests), dtype=bool)
        unique, first = np.unique(digests, return_index=True)  # sorted, so grouped by first byte
        heads = unique.view(np.uint8).reshape(-1, 16)[:, 0]
        starts = np.flatnonzero(np.r_[True, heads[1:] != heads[:-1]])
        for start, end in zip(starts.tolist(), np.r_[starts[1:], len(unique)].tolist()):
            new[first[start:end]] = self._add_sorted(int(heads[start]), unique[start:end])
        return new

    def _add_sorted(self, bucket: int, keys: np.ndarray) -> np.ndarray:
        """Add sorted distinct `keys` to one bucket; True for those it did not hold."""
        old = self.buckets[bucket]
        at = np.searchsorted(old, keys)
        found = old[np.minimum(at, len(old) - 1)] == keys if len(old) else np.zeros(len(keys), dtype=bool)
        self.buckets[bucket] = np.insert(old, at[~found], keys[~found])
        return ~found

    def __len__(self) -> int:
        return sum(map(len, self.buckets))


class PairFilter:
    """Decides chunk by chunk which pairs to keep, and counts the reasons for the others in the
    order they first occur (the order manifest.json has always listed them in)."""

    def __init__(self, *, max_len: int, max_ratio: float, dedupe: bool):
        self.reasons = ("empty side", f"longer than max_len={max_len} tokens",
                        f"length ratio above max_len_ratio={max_ratio}", "duplicate pair")
        self.max_len, self.max_ratio = max_len, max_ratio
        self.seen = DigestSet() if dedupe else None
        self.counts = np.zeros(len(self.reasons), dtype=np.int64)
        self.first_at: dict[int, int] = {}  # reason -> index of the first pair dropped for it
        self.read = 0

    def keep(self, src_lens: np.ndarray, tgt_lens: np.ndarray, digests: np.ndarray | None) -> np.ndarray:
        """(pairs,) bool: which pairs of the next chunk to keep."""
        short, long = np.minimum(src_lens, tgt_lens), np.maximum(src_lens, tgt_lens)
        reason = np.full(len(src_lens), KEPT, dtype=np.int8)
        # Written from the last reason to the first, so that the first that applies stays. A pair
        # with the text of an earlier one has its lengths too, so it repeats a pair that was kept
        # exactly when it passes the length filters itself: the set may hold every pair seen.
        if self.seen is not None:
            reason[~self.seen.add(digests)] = 3
        reason[long / np.maximum(short, 1) > self.max_ratio] = 2
        reason[long > self.max_len] = 1
        reason[short == 0] = 0
        dropped = reason[reason != KEPT]
        self.counts += np.bincount(dropped, minlength=len(self.reasons))
        for code in np.unique(dropped).tolist():
            self.first_at.setdefault(code, self.read + int(np.argmax(reason == code)))
        self.read += len(reason)
        return reason == KEPT

    def dropped(self) -> dict[str, int]:
        return {self.reasons[code]: int(self.counts[code]) for code in sorted(self.first_at, key=self.first_at.get)}
