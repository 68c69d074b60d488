"""A parallel corpus of any size with the paper's length profile, made from a small seed corpus.

Sutskever et al. trained on 12M WMT'14 English-French pairs (304M English words: about 25 a
sentence, a few over 100). Tatoeba's pairs are short (about 6 words), so each output pair joins
seed pairs, both sides in the same order, until its source side reaches a drawn target length:

    70%  20-30 words      (the bulk of the paper's sentences)
    15%   3-19 words
    14%  31-60 words
     1% 100-150 words     (the long tail: over max_len=100 tokens, preprocess drops them)

The output is a deterministic function of (seed corpus, --seed, pair index): blocks of
BLOCK pairs are drawn from generators seeded with (seed, block), so the first N pairs of a
larger corpus are the corpus of N pairs, and memory stays flat (one block at a time). Pairs
made of one short seed pair repeat, as real corpora do, and preprocess drops the repeats.
A histogram of the source lengths goes to stdout at the end.

    python scripts/make_scale_corpus.py --seed-corpus ../shared/data/tatoeba-en-fr/train \\
        --langs en fr --pairs 12000000 --out /tmp/scale/train
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmt.data.corpus import read_parallel  # noqa: E402

BLOCK = 100_000
# (share, shortest, longest) target source lengths in words
PROFILE = ((0.70, 20, 30), (0.15, 3, 19), (0.14, 31, 60), (0.01, 100, 150))
BINS = (0, 10, 20, 31, 50, 80, 100, 1_000_000)


def target_lengths(rng: np.random.Generator, count: int) -> np.ndarray:
    shares = np.array([share for share, _, _ in PROFILE])
    band = rng.choice(len(PROFILE), size=count, p=shares / shares.sum())
    low = np.array([lo for _, lo, _ in PROFILE])[band]
    high = np.array([hi for _, _, hi in PROFILE])[band]
    return rng.integers(low, high + 1)


def make_block(rng: np.random.Generator, src: list[str], tgt: list[str], words: np.ndarray,
               count: int) -> tuple[list[str], list[str]]:
    """`count` pairs: seed pairs drawn with replacement, joined until the source reaches its target."""
    targets = target_lengths(rng, count)
    # Enough draws for the block (joined pairs use targets / mean words draws on average), topped up if short.
    draws = rng.integers(0, len(src), size=int(targets.sum() / words.mean() * 1.5) + 64)
    while True:
        total = np.cumsum(words[draws])
        # The pairs of sentence k are draws[ends[k-1]:ends[k]]: as many as bring its words nearest
        # the target (at least one), so the lengths centre on the targets rather than overshoot.
        ends = np.empty(count, dtype=np.int64)
        start, done = 0, 0
        for k, target in enumerate(targets.tolist()):
            before = int(total[start - 1]) if start else 0
            end = int(np.searchsorted(total, before + target)) + 1  # the fewest that reach the target
            if end > len(draws):
                break
            if end - 1 > start and before + target - int(total[end - 2]) < int(total[end - 1]) - before - target:
                end -= 1  # one pair fewer falls short by less than this overshoots
            ends[k], start, done = end, end, k + 1
        if done == count:
            break
        draws = np.concatenate([draws, rng.integers(0, len(src), size=len(draws))])
    out_src, out_tgt, start = [], [], 0
    for end in ends.tolist():
        chosen = draws[start:end].tolist()
        out_src.append(" ".join(src[i] for i in chosen))
        out_tgt.append(" ".join(tgt[i] for i in chosen))
        start = end
    return out_src, out_tgt


def write_corpus(seed_prefix: str, langs: tuple[str, str], pairs: int, out: Path, seed: int) -> np.ndarray:
    """Write out.SRC and out.TGT; returns the histogram counts of the source lengths over BINS."""
    src, tgt = read_parallel(f"{seed_prefix}.{langs[0]}", f"{seed_prefix}.{langs[1]}")
    keep = [i for i in range(len(src)) if src[i] and tgt[i]]
    src, tgt = [src[i] for i in keep], [tgt[i] for i in keep]
    words = np.array([len(s.split()) for s in src], dtype=np.int64)
    counts = np.zeros(len(BINS) - 1, dtype=np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.{langs[0]}", "w", encoding="utf-8") as fs, open(f"{out}.{langs[1]}", "w", encoding="utf-8") as ft:
        for block in range(-(-pairs // BLOCK)):
            rng = np.random.default_rng([seed, block])
            block_src, block_tgt = make_block(rng, src, tgt, words, BLOCK)
            size = min(BLOCK, pairs - block * BLOCK)
            fs.write("".join(line + "\n" for line in block_src[:size]))
            ft.write("".join(line + "\n" for line in block_tgt[:size]))
            lengths = np.array([len(s.split()) for s in block_src[:size]])
            counts += np.histogram(lengths, bins=BINS)[0]
    return counts


def summary(counts: np.ndarray) -> str:
    total = int(counts.sum())
    rows = []
    for (low, high), count in zip(zip(BINS[:-1], BINS[1:]), counts.tolist()):
        label = f"{low}-{high - 1} words" if high < BINS[-1] else f"{low}+ words"
        rows.append(f"  {label:>14}  {count:>10,}  {100 * count / total:5.1f}%  {'#' * round(50 * count / total)}")
    return f"source lengths of {total:,} pairs:\n" + "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed-corpus", required=True, help="prefix of the seed corpus: PREFIX.SRC, PREFIX.TGT")
    parser.add_argument("--langs", nargs=2, default=("en", "fr"), metavar=("SRC", "TGT"))
    parser.add_argument("--pairs", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="output prefix: writes OUT.SRC and OUT.TGT")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    counts = write_corpus(args.seed_corpus, tuple(args.langs), args.pairs, args.out, args.seed)
    print(summary(counts))


if __name__ == "__main__":
    main()
