"""Reading plain-text corpora and checking them before anything is trained on them."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from nmt.errors import DataError

BOM = "\ufeff"


def check_readable(path: Path) -> None:
    if not path.exists():
        where = "; data/README.md in the nmt repository says how to get each corpus" if "data" in path.parts else ""
        raise DataError(f"file {path} not found: check the path (and the data prefix and language codes){where}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, but a text file is expected here")


def decode_utf8(data: bytes, path: Path | str, first_line: int = 1) -> str:
    """Decode `data` (lines `first_line`.. of the file), naming the file and line of the first
    byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + data.count(b"\n", 0, e.start)
        raise DataError(
            f"{path} line {line} is not valid UTF-8 (byte 0x{data[e.start]:02x}): "
            f"convert the file to UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None


def clean_line(line: str) -> str:
    """One line as the toolkit sees it: white space folded, control characters and BOMs gone.

    Every white-space character (tab, a stray carriage return, U+2028, no-break space ...) is a
    word boundary, so it becomes a space rather than gluing two words together; other control
    characters (NUL, ESC, DEL, C1 codes) and byte-order marks (U+FEFF, e.g. where files with a BOM
    were concatenated) are dropped; runs of spaces fold into one and the ends are trimmed.
    """
    if line.isprintable():
        return " ".join(line.split())
    kept = "".join(" " if ch.isspace() else ch for ch in line
                   if ch.isspace() or (ch != BOM and unicodedata.category(ch) != "Cc"))
    return " ".join(kept.split())


def split_lines(text: str) -> list[str]:
    """Lines without their endings: \\n and \\r\\n both end a line; a leading BOM is dropped."""
    if text.startswith(BOM):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_lines(path: str | Path, *, allow_empty: bool = False) -> list[str]:
    """All lines of a UTF-8 text file, cleaned with `clean_line`."""
    path = Path(path)
    check_readable(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    lines = split_lines(decode_utf8(data, path))
    if not lines and not allow_empty:
        raise DataError(f"file {path} is empty: it must hold one sentence per line")
    return [clean_line(line) for line in lines]


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> tuple[list[str], list[str]]:
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: "
            f"line N of one side must translate line N of the other"
        )
    return src, tgt


def corpus_paths(prefix: str, src_lang: str, tgt_lang: str) -> tuple[Path, Path]:
    """`data/tatoeba-en-fr/train` with en, fr -> (train.en, train.fr)."""
    return Path(f"{prefix}.{src_lang}"), Path(f"{prefix}.{tgt_lang}")
