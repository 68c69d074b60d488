#!/usr/bin/env python3
"""Write the peers' copy of the data: space-separated SentencePiece pieces plus vocab files.

    prepare_data.py DATA_DIR WORK_DATA_DIR [--reverse-src]

DATA_DIR is either
  * a folder of `nmt preprocess` (it has manifest.json): the exact training pairs our model
    trains on (already filtered and de-duplicated) and the valid split, turned from ids back into
    pieces with its own SentencePiece model(s); the vocabularies are the models' pieces in id
    order, without our four specials (<pad> <unk> <s> </s> = ids 0-3), so that each peer, which
    adds its own four specials, ends with exactly our vocabulary size; or
  * a folder of text: train.src train.tgt valid.src valid.tgt (pieces separated by spaces) and,
    optionally, vocab.src vocab.tgt (one piece per line; a second column such as a SentencePiece
    score or a count is dropped, and so are special tokens). Without vocab files the vocabulary
    is every piece of the training side, most frequent first.

WORK_DATA_DIR receives train.src train.tgt valid.src valid.tgt vocab.src vocab.tgt and stats.json.
With --reverse-src each source line is written reversed, which is what our model does inside
(model.reverse_source, on by default): the peers have no such switch, so they get reversed data.

Needs numpy and sentencepiece only (both on the GPU machine); never imports nmt.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

SPECIALS = {"<pad>", "<unk>", "<s>", "</s>", "<blank>", "<eos>", "<bos>"}
UNK = "<unk>"  # the unknown token of both peers (JoeyNMT's default and OpenNMT-py's DefaultTokens.UNK)
# Characters that str.splitlines() (JoeyNMT's file reader) or a whitespace split treat as breaks:
# a piece holding one would shift lines or split a token, so such pieces get an escaped name.
BREAKS = set("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\t ")


def safe_piece(piece: str) -> str:
    if any(c in BREAKS for c in piece) or piece in SPECIALS:
        return "\u27e8" + piece.encode("unicode_escape").decode("ascii") + "\u27e9"
    return piece


def write_lines(path: Path, lines) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
            n += 1
    return n


def from_prepared(src_dir: Path, out: Path, reverse_src: bool) -> dict:
    import numpy as np
    import sentencepiece as spm

    manifest = json.loads((src_dir / "manifest.json").read_text(encoding="utf-8"))
    if (src_dir / "spm.model").exists():
        models = {"src": src_dir / "spm.model", "tgt": src_dir / "spm.model"}
    else:
        models = {"src": src_dir / "src.model", "tgt": src_dir / "tgt.model"}
    pieces = {}
    for side, path in models.items():
        sp = spm.SentencePieceProcessor()
        sp.Load(str(path))
        table = [safe_piece(sp.IdToPiece(i)) for i in range(sp.GetPieceSize())]
        specials = {sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()} - {-1}
        if specials != {0, 1, 2, 3}:
            sys.exit(f"{path}: expected the special ids 0-3 of nmt preprocess, got {sorted(specials)}")
        table[sp.unk_id()] = UNK
        if len(set(table[4:])) != len(table) - 4:
            sys.exit(f"{path}: pieces are not unique after escaping")
        pieces[side] = table
        write_lines(out / f"vocab.{side}", table[4:])

    stats = {"source": "nmt-prepared", "prepared_dir": str(src_dir), "manifest_splits": manifest.get("splits", {})}
    for split in ("train", "valid"):
        arrays = {}
        for side in ("src", "tgt"):
            ids = np.load(src_dir / f"{split}.{side}.ids.npy", mmap_mode="r", allow_pickle=False)
            offsets = np.load(src_dir / f"{split}.{side}.offsets.npy", allow_pickle=False)
            arrays[side] = (np.asarray(ids, dtype=np.int64), offsets)
        n = len(arrays["src"][1]) - 1
        if n != len(arrays["tgt"][1]) - 1:
            sys.exit(f"{src_dir}: {split} sides differ in length")
        tgt_tokens = 0
        for side in ("src", "tgt"):
            ids, offsets = arrays[side]
            table = pieces[side]
            lines = []
            for i in range(n):
                seq = ids[offsets[i]:offsets[i + 1]].tolist()
                toks = [table[t] for t in seq if t == 1 or t > 3]
                if side == "src" and reverse_src:
                    toks.reverse()
                if side == "tgt":
                    tgt_tokens += len(toks) + 1
                lines.append(" ".join(toks) if toks else UNK)
            write_lines(out / f"{split}.{side}", lines)
        stats[split] = {"pairs": n, "tgt_tokens_with_eos": tgt_tokens}
    stats["vocab_src_without_specials"] = len(pieces["src"]) - 4
    stats["vocab_tgt_without_specials"] = len(pieces["tgt"]) - 4
    return stats


def read_vocab(path: Path) -> list[str]:
    seen, vocab = set(), []
    for line in path.read_text(encoding="utf-8").split("\n"):
        fields = line.split()
        if not fields:
            continue
        tok = fields[0]
        if tok in SPECIALS or tok in seen:
            continue
        seen.add(tok)
        vocab.append(tok)
    return vocab


def from_text(src_dir: Path, out: Path, reverse_src: bool) -> dict:
    stats = {"source": "text", "data_dir": str(src_dir)}
    counters = {"src": Counter(), "tgt": Counter()}
    for split in ("train", "valid"):
        sides = {}
        for side in ("src", "tgt"):
            with (src_dir / f"{split}.{side}").open(encoding="utf-8", newline="\n") as f:
                sides[side] = [line.rstrip("\n").split() for line in f]
        if len(sides["src"]) != len(sides["tgt"]):
            sys.exit(f"{src_dir}: {split}.src and {split}.tgt differ in length")
        keep = [i for i in range(len(sides["src"])) if sides["src"][i] and sides["tgt"][i]]
        tgt_tokens = 0
        for side in ("src", "tgt"):
            lines = []
            for i in keep:
                toks = [t if t == UNK else safe_piece(t) for t in sides[side][i]]
                if split == "train":
                    counters[side].update(toks)
                if side == "src" and reverse_src:
                    toks.reverse()
                if side == "tgt":
                    tgt_tokens += len(toks) + 1
                lines.append(" ".join(toks))
            write_lines(out / f"{split}.{side}", lines)
        stats[split] = {"pairs": len(keep), "dropped_empty": len(sides["src"]) - len(keep),
                        "tgt_tokens_with_eos": tgt_tokens}
    for side in ("src", "tgt"):
        vocab_file = src_dir / f"vocab.{side}"
        if vocab_file.is_file():
            vocab = [safe_piece(t) for t in read_vocab(vocab_file)]
            stats[f"vocab_{side}_from"] = str(vocab_file)
        else:
            vocab = [t for t, _ in sorted(counters[side].items(), key=lambda kv: (-kv[1], kv[0])) if t != UNK]
            stats[f"vocab_{side}_from"] = "train counts"
        write_lines(out / f"vocab.{side}", vocab)
        stats[f"vocab_{side}_without_specials"] = len(vocab)
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--reverse-src", action="store_true")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if (args.data_dir / "manifest.json").is_file():
        stats = from_prepared(args.data_dir, args.out_dir, args.reverse_src)
    else:
        stats = from_text(args.data_dir, args.out_dir, args.reverse_src)
    stats["reversed_src"] = args.reverse_src
    (args.out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    print("prepare_data:", json.dumps({k: v for k, v in stats.items() if k != "manifest_splits"}))


if __name__ == "__main__":
    main()
