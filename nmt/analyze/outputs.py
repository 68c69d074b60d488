"""The files an analysis writes: the output folder, CSV and JSON numbers, and the folder's index.

Every command records what it wrote in OUT/analysis.json ({command: {"inputs": ..., "files": [...]}}),
so that `report` can show a folder's plots in the order they were made and name their inputs.
Several commands may share one folder; each updates only its own entry.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Sequence

from nmt.errors import DataError

INDEX = "analysis.json"


def output_folder(out: Path) -> Path:
    """`out`, created if needed."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file: name a folder for the plots and tables")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the output folder {out}: {e.strerror}") from None
    return out


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> Path:
    """A CSV file with a header row; None and NaN become empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def read_csv(path: Path) -> list[list[str]]:
    """Every row of a CSV file, the header first."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_index(out: Path) -> dict:
    """OUT/analysis.json, or {} where there is none (or it is unreadable: then the report globs)."""
    try:
        index = json.loads((out / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def record(out: Path, command: str, inputs: dict, files: Sequence[Path]) -> None:
    """Note in OUT/analysis.json that `command` made `files` (paths inside `out`) from `inputs`."""
    index = read_index(out)
    index[command] = {"inputs": inputs, "files": [Path(f).name for f in files]}
    write_json(out / INDEX, index)
