"""Moses n-best files: reading them (every line checked), and writing them with the model's scores.

A line is `index ||| hypothesis ||| scores [||| more fields]`:
  index       the 0-based number of the source line the hypothesis translates; the lines of one
              source come together, and the indices run 0, 1, 2, ... (every source has at least one)
  hypothesis  the candidate translation (it may be empty)
  scores      one or more numbers: a single score (as `nmt translate --n-best` writes it) or
              Moses' feature values, whose labels (`LM0=`, `tm:`) are skipped
  more        anything else (Moses' total, alignments): kept as it is, not used
The scores field gives an entry's features; every line must have the same number of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from nmt.data.corpus import read_lines
from nmt.errors import DataError

SEPARATOR = "|||"


@dataclass(frozen=True)
class NbestEntry:
    index: int  # the source line's 0-based number
    hypothesis: str
    fields: tuple[str, ...]  # the fields after the hypothesis, as written (stripped)
    features: tuple[float, ...]  # the numbers of the first of them: the scores

    def line(self, *extra: str) -> str:
        """The entry as an n-best line, with `extra` fields appended."""
        return f" {SEPARATOR} ".join([str(self.index), self.hypothesis, *self.fields, *extra])


def parse_features(field: str, where: str) -> tuple[float, ...]:
    """'-1.5' or 'LM0= -20.1 -3 TM0= 0.5' -> the numbers; labels end in '=' or ':'."""
    numbers = []
    for word in field.split():
        if word.endswith(("=", ":")):
            continue
        try:
            value = float(word)
        except ValueError:
            raise DataError(f"{where}: the scores field holds '{word}', which is neither a number nor a label "
                            f"(ending in = or :)") from None
        if not math.isfinite(value):
            raise DataError(f"{where}: score '{word}' is not a finite number")
        numbers.append(value)
    if not numbers:
        raise DataError(f"{where}: the scores field (the third) holds no number")
    return tuple(numbers)


def parse_line(line: str, where: str) -> NbestEntry:
    """One line; `where` names it in errors ('FILE line N')."""
    parts = [part.strip() for part in line.split(SEPARATOR)]
    if len(parts) < 3:
        raise DataError(f"{where} is not an n-best line: expected 'index ||| hypothesis ||| score', "
                        f"found {line[:60]!r}")
    if not (parts[0].isascii() and parts[0].isdigit()):
        raise DataError(f"{where}: the index '{parts[0][:20]}' is not a whole number (the source line's "
                        f"0-based number)")
    return NbestEntry(int(parts[0]), parts[1], tuple(parts[2:]), parse_features(parts[2], where))


def read_nbest(path: Path, sources: Optional[int] = None, source_name: str = "the source") -> list[list[NbestEntry]]:
    """Each source's entries, in file order; `sources`, if given, is the count the file must cover."""
    lines = read_lines(path, allow_empty=True)
    if not lines:
        raise DataError(f"{path} holds no candidates: an n-best file has one 'index ||| hypothesis ||| score' "
                        f"line per candidate")
    groups: list[list[NbestEntry]] = []
    for number, line in enumerate(lines, 1):
        where = f"{path} line {number}"
        entry = parse_line(line, where)
        if entry.index not in (len(groups) - 1, len(groups)):
            expected = "0" if not groups else f"{len(groups) - 1} or {len(groups)}"
            raise DataError(f"{where}: index {entry.index} where {expected} was expected: the indices must run "
                            f"0, 1, 2, ... in order, each source's candidates together")
        if groups and len(entry.features) != len(groups[0][0].features):
            raise DataError(f"{where} has {len(entry.features)} scores but line 1 has "
                            f"{len(groups[0][0].features)}: every line needs the same features")
        if entry.index == len(groups):
            groups.append([])
        groups[-1].append(entry)
    if sources is not None and len(groups) != sources:
        raise DataError(f"{path} has candidates for {len(groups)} sources but {source_name} has {sources} lines: "
                        f"an n-best file needs candidates for every source line")
    return groups


def format_score(log_prob: float, per_token: float) -> str:
    """The model's field: its log-probability, summed and per token."""
    return f"{log_prob:.6f} {per_token:.6f}"
