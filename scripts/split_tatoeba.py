"""Split a manythings.org/anki release file into heldout, test, valid and train, as our corpora are.

    python scripts/split_tatoeba.py fra.txt --lang fr --out data/tatoeba-en-fr

Each line of the release is `ENGLISH<TAB>OTHER[<TAB>attribution]`. The split:
  1. keep the lines whose first two columns, stripped, are both non-empty (the stripped text is kept);
  2. group the pairs into connected components of the graph whose nodes are English sentences and
     other-language sentences (keyed by side and text) and whose edges are the pairs;
  3. list the components in the order of their first pair in the file, and shuffle that list
     with `random.Random(seed).shuffle` (seed 2014);
  4. give each component in turn, whole, to the first of heldout, test, valid that still holds
     fewer pairs than its size (3000, 3000, 2000 for fr and de; 300, 300, 200 for fa), else to train;
  5. write each split's pairs in the order assigned (a component's pairs in file order) as
     OUT/{split}.en and OUT/{split}.{lang}.
No English or other-language sentence is in two splits. The same release file gives the same split.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmt.errors import USAGE, DataError, NmtError  # noqa: E402
from nmt.files import write_atomically  # noqa: E402

FILLED = ("heldout", "test", "valid")  # filled in this order up to their sizes; the rest is train
SPLITS = (*FILLED, "train")
DEFAULT_SIZES = {"fr": (3000, 3000, 2000), "de": (3000, 3000, 2000), "fa": (300, 300, 200)}

Pair = tuple[str, str]  # (English, other language)


def parse_pairs(lines: list[str]) -> list[Pair]:
    """The (English, other) pairs of the lines whose first two columns are non-empty once stripped."""
    pairs = []
    for line in lines:
        columns = line.split("\t")
        if len(columns) < 2:
            continue
        english, other = columns[0].strip(), columns[1].strip()
        if english and other:
            pairs.append((english, other))
    return pairs


def components(pairs: list[Pair]) -> list[list[Pair]]:
    """Connected components (union-find), in the order of their first pair; each in file order."""
    node: dict[tuple[str, str], int] = {}  # (side, text) -> index into parent / size
    parent: list[int] = []
    size: list[int] = []

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:  # path compression: point the whole path at the root
            next_x = parent[x]
            parent[x] = root
            x = next_x
        return root

    def node_of(key: tuple[str, str]) -> int:
        if key not in node:
            node[key] = len(parent)
            parent.append(len(parent))
            size.append(1)
        return node[key]

    for english, other in pairs:
        a, b = find(node_of(("en", english))), find(node_of(("other", other)))
        if a != b:
            if size[a] < size[b]:
                a, b = b, a
            parent[b] = a
            size[a] += size[b]
    groups: dict[int, list[Pair]] = {}  # insertion order = order of each component's first pair
    for pair in pairs:
        groups.setdefault(find(node[("en", pair[0])]), []).append(pair)
    return list(groups.values())


def assign(ordered: list[list[Pair]], sizes: tuple[int, int, int]) -> dict[str, list[Pair]]:
    """Each component, whole, to the first of heldout, test, valid below its size, else to train."""
    splits: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for component in ordered:
        name = next((n for n, limit in zip(FILLED, sizes) if len(splits[n]) < limit), "train")
        splits[name].extend(component)
    return splits


def split_pairs(pairs: list[Pair], sizes: tuple[int, int, int], seed: int = 2014) -> dict[str, list[Pair]]:
    ordered = components(pairs)
    random.Random(seed).shuffle(ordered)
    return assign(ordered, sizes)


def read_release(path: Path) -> list[str]:
    """The file's lines (split at "\\n"; a trailing "\\r" is removed by the stripping later)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; download the release zip from "
                        "https://www.manythings.org/anki/ and unzip it (e.g. fra-eng.zip holds fra.txt)") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder; name the release's text file (e.g. fra.txt)") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path} line {line} is not UTF-8; pass the .txt file unzipped from the "
                        "manythings.org release, not the zip or a re-encoded copy") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def parse_sizes(text: str | None, lang: str) -> tuple[int, int, int]:
    if text is None:
        if lang not in DEFAULT_SIZES:
            raise DataError(f"no default sizes for --lang {lang} (only {', '.join(DEFAULT_SIZES)}); "
                            "pass --sizes HELDOUT,TEST,VALID, e.g. --sizes 300,300,200")
        return DEFAULT_SIZES[lang]
    parts = text.split(",")
    if len(parts) != 3 or not all(re.fullmatch(r"\s*[0-9]+\s*", p) for p in parts):
        raise DataError(f"--sizes {text!r} is not three whole numbers; write HELDOUT,TEST,VALID, "
                        "e.g. --sizes 3000,3000,2000")
    return tuple(int(p) for p in parts)


def output_files(out: Path, lang: str) -> list[Path]:
    return [out / f"{split}.{side}" for split in SPLITS for side in ("en", lang)]


def check_output(out: Path, lang: str, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; name a folder (it is created if missing)")
    existing = [p.name for p in output_files(out, lang) if p.exists()]
    if existing and not overwrite:
        raise DataError(f"{out} already holds {', '.join(existing)}; pass --overwrite to replace them, "
                        "or choose another --out")


def write_splits(splits: dict[str, list[Pair]], out: Path, lang: str) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the folder {out}: {e.strerror}; choose another --out") from None
    for split, pairs in splits.items():
        for side, column in (("en", 0), (lang, 1)):
            write_atomically(out / f"{split}.{side}", "".join(pair[column] + "\n" for pair in pairs))


def run(args: argparse.Namespace) -> None:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", args.lang) or args.lang == "en":
        raise DataError(f"--lang {args.lang!r} is not a language code other than en; write e.g. --lang fr")
    sizes = parse_sizes(args.sizes, args.lang)
    check_output(args.out, args.lang, args.overwrite)
    lines = read_release(args.release)
    pairs = parse_pairs(lines)
    if not pairs:
        raise DataError(f"{args.release} has no line with an English and a second column separated by a tab; "
                        "pass the .txt file from the manythings.org release (e.g. fra.txt)")
    splits = split_pairs(pairs, sizes, args.seed)
    write_splits(splits, args.out, args.lang)
    print(f"{args.release}: {len(pairs)} pairs kept, {len(lines) - len(pairs)} lines skipped")
    for split in SPLITS:
        print(f"{split}: {len(splits[split])} pairs -> {args.out / split}.{{en,{args.lang}}}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release", type=Path, help="the release's text file, e.g. fra.txt from fra-eng.zip")
    parser.add_argument("--lang", required=True, help="the other language's code, used as file suffix: fr, de, fa")
    parser.add_argument("--out", type=Path, required=True, help="folder for {heldout,test,valid,train}.{en,LANG}")
    parser.add_argument("--sizes", help="HELDOUT,TEST,VALID pairs (default 3000,3000,2000 for fr and de; "
                        "300,300,200 for fa)")
    parser.add_argument("--seed", type=int, default=2014)
    parser.add_argument("--overwrite", action="store_true", help="replace split files already in --out")
    args = parser.parse_args(argv)
    try:
        run(args)
    except NmtError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(USAGE)


if __name__ == "__main__":
    main()
