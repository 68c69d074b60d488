"""One self-contained HTML page with the plots and tables of some analysis folders.

The PNGs are embedded as base64 data URIs, so the page can be mailed or moved alone; each CSV
is shown as a table (the first rows of a long one) with a relative link to the file, and each
JSON file as text with a link (only the link, for a long one: attention weights). Only files
found on disk when the page is written are shown or linked.
Run folders given as inputs are first turned into curves (OUT/curves/).
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Sequence

from nmt.analyze.curves import analyze_curves
from nmt.analyze.outputs import INDEX, output_folder, read_csv, read_index
from nmt.errors import DataError

REPORT = "report.html"
SHOWN = (".png", ".csv", ".json")
MAX_ROWS = 30  # rows shown of a long table; the link leads to the rest
MAX_JSON = 20_000  # bytes of a JSON file shown as text; a longer one is only linked

STYLE = """body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
img { max-width: 100%; border: 1px solid #eee; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: 90%; }
th, td { border: 1px solid #ccc; padding: .2em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: 85%; }
.note { color: #666; font-size: 90%; }"""


def folder_files(folder: Path) -> list[Path]:
    """The folder's plots and tables: in the order its analyses wrote them, then any others."""
    listed = [folder / name for entry in read_index(folder).values() if isinstance(entry, dict)
              for name in entry.get("files", [])]
    others = sorted(p for p in folder.iterdir() if p.suffix in SHOWN and p.name != INDEX)
    ordered = list(dict.fromkeys(listed + others))  # without repeats, first place kept
    return [p for p in ordered if p.is_file() and p.suffix in SHOWN]


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.name)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def _table(path: Path, page: Path) -> str:
    rows = read_csv(path)
    if not rows:
        return ""
    header, body = rows[0], rows[1:]
    cells = ["<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>"]
    cells += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body[:MAX_ROWS]]
    link = html.escape(os.path.relpath(path, page.parent))
    shown = f"first {MAX_ROWS} of {len(body)} rows" if len(body) > MAX_ROWS else f"{len(body)} rows"
    return (f'<h3>{html.escape(path.name)}</h3><p class="note">{shown}; file: <a href="{link}">{link}</a></p>'
            f"<table>{''.join(cells)}</table>")


def _json(path: Path, page: Path) -> str:
    """The file's text, or only a link to it where it is long (attention weights, say)."""
    link = html.escape(os.path.relpath(path, page.parent))
    if path.stat().st_size > MAX_JSON:
        return (f'<h3>{html.escape(path.name)}</h3><p class="note">{path.stat().st_size:,} bytes, too long to show '
                f'here; file: <a href="{link}">{link}</a></p>')
    try:
        text = json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=2, ensure_ascii=False)
    except ValueError:
        text = path.read_text(encoding="utf-8", errors="replace")
    return f'<h3>{html.escape(path.name)}</h3><p class="note">file: <a href="{link}">{link}</a></p><pre>{html.escape(text)}</pre>'


def _describe(inputs: dict) -> str:
    """{"src": "a.txt", "hyp": ["x=1", "y=2"]} -> "src a.txt; hyp x=1, y=2"."""
    def text(value):
        return ", ".join(map(str, value)) if isinstance(value, list) else str(value)

    return "; ".join(f"{key} {text(value)}" for key, value in inputs.items())


def _inputs(folder: Path) -> str:
    lines = [f"<li><b>{html.escape(command)}</b>: {html.escape(_describe(entry.get('inputs') or {}))}</li>"
             for command, entry in read_index(folder).items() if isinstance(entry, dict)]
    return f"<ul class='note'>{''.join(lines)}</ul>" if lines else ""


def _heading(folder: Path, page: Path) -> str:
    relative = os.path.relpath(folder, page.parent)
    return folder.resolve().name if relative == "." else relative


def section(folder: Path, page: Path) -> str:
    files = folder_files(folder)
    parts = [f"<h2>{html.escape(_heading(folder, page))}</h2>", _inputs(folder)]
    parts += [_image(p) for p in files if p.suffix == ".png"]
    parts += [_table(p, page) for p in files if p.suffix == ".csv"]
    parts += [_json(p, page) for p in files if p.suffix == ".json"]
    return "\n".join(parts)


def _check_input(path: Path) -> None:
    if not path.is_dir():
        what = "not found" if not path.exists() else "is a file"
        raise DataError(f"{path} {what}: pass run folders (with log.jsonl) or folders written by nmt analyze --out")
    if not any(p.suffix in (".png", ".csv") for p in path.iterdir()):
        raise DataError(f"{path} holds neither log.jsonl nor plots or tables: pass a run folder or a folder "
                        f"written by nmt analyze --out")


def build_report(inputs: Sequence[Path], out: Path) -> Path:
    """OUT/report.html from run folders (plotted into OUT/curves first) and analysis folders."""
    out = output_folder(out)
    runs = [p for p in inputs if (p / "log.jsonl").is_file()]
    folders = [p for p in inputs if p not in runs]
    for folder in folders:
        _check_input(folder)
    if runs:
        analyze_curves(runs, output_folder(out / "curves"))
        folders.insert(0, out / "curves")
    page = out / REPORT
    body = "\n".join(section(folder, page) for folder in dict.fromkeys(f.resolve() for f in folders))
    page.write_text(f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>nmt analysis</title>"
                    f"<style>{STYLE}</style></head>\n<body><h1>nmt analysis</h1>\n{body}\n</body></html>\n",
                    encoding="utf-8")
    return page
