"""Attention heatmaps: for chosen sentences, where the model looked in the source as it wrote each
target piece of its translation (Bahdanau et al. 2015, Figure 3; Luong et al. 2015, Figure 7).

Each sentence is translated with the checkpoint's decoding settings, then its translation is
teacher forced through the decoder to read the weights (nmt/decode/attention.py). A heatmap has
the source pieces along the x axis in reading order and the target pieces down the y axis, EOS
(`</s>`) last; each row sums to one. A figure is at least the usual 800 x 500 pixels and grows
with the sentence, so that every piece keeps a readable label (`heatmap_size`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional, Sequence

from nmt.analyze.outputs import output_folder, read_index, record, write_json
from nmt.analyze.plots import DPI, LABEL_SIZE, SIZE, TEXT_SIZE, new_figure, save
from nmt.data.corpus import read_lines
from nmt.errors import DataError

MAX_SENTENCES = 100  # one PNG each
CELL = 0.3  # inches per piece: a 9-point label and some room
MARGINS = (3.0, 2.6)  # inches beside the cells: labels, axis names, title and colour bar (width, height)
MAX_INCHES = 60.0  # a longer sentence gets smaller cells, and only every k-th piece a label
LABEL_INCHES = 0.16  # the least room a label needs along its axis
MAX_PIECE = 18  # characters of a piece shown; a longer one is cut with "…"


def read_sentences(path: Optional[Path], sentences: Sequence[str]) -> list[str]:
    """The --sentence texts, then the non-empty lines of `path`; at least one, at most MAX_SENTENCES."""
    chosen = [s.strip() for s in sentences if s.strip()]
    if path is not None:
        chosen += [line for line in read_lines(path) if line]
    if not chosen:
        raise DataError("no sentences to show: pass a file of sentences (one per line) or --sentence TEXT")
    if len(chosen) > MAX_SENTENCES:
        raise DataError(f"{len(chosen)} sentences, but nmt analyze attention draws at most {MAX_SENTENCES} "
                        f"(one PNG each): choose fewer")
    return chosen


def _cell(pieces: int) -> float:
    """Inches per piece along an axis of `pieces`: CELL, less where that would pass MAX_INCHES."""
    return min(CELL, (MAX_INCHES - max(MARGINS)) / max(pieces, 1))


def heatmap_size(source_pieces: int, target_pieces: int) -> tuple[int, int]:
    """The PNG's (width, height) in pixels for a sentence of these many pieces (target with EOS)."""
    width = max(SIZE[0], MARGINS[0] + _cell(source_pieces) * source_pieces)
    height = max(SIZE[1], MARGINS[1] + _cell(target_pieces) * target_pieces)
    return round(width * DPI), round(height * DPI)


def _label(piece: str) -> str:
    return piece if len(piece) <= MAX_PIECE else piece[:MAX_PIECE - 1] + "…"


def _ticks(axis_ticks, labels_of, pieces: Sequence[str]) -> None:
    """A label per piece, or per k-th piece where the cells are too small for every label."""
    every = max(1, math.ceil(LABEL_INCHES / _cell(len(pieces))))
    positions = list(range(0, len(pieces), every))
    axis_ticks(positions)
    labels_of([_label(pieces[i]) for i in positions], fontsize=TEXT_SIZE)


def plot_heatmap(attention_map, title: str, path: Path) -> Path:
    """One sentence's weights as a grey-scale grid, darker for more weight, with a colour bar."""
    source, target = attention_map.source, attention_map.target
    width, height = heatmap_size(len(source), len(target))
    figure, axes = new_figure(title, "source pieces, in reading order", "target pieces, in output order",
                              size=(width / DPI, height / DPI))
    axes.grid(False)
    # Fixed limits 0..1: one shade means one weight in every sentence's picture.
    image = axes.imshow(attention_map.weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto",
                        interpolation="nearest")
    _ticks(axes.set_xticks, axes.set_xticklabels, source)
    _ticks(axes.set_yticks, axes.set_yticklabels, target)
    for label in axes.get_xticklabels():
        label.set_rotation(60)
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")
    # A bar about as long as the grid however tall the sentence makes it (its aspect is length / width;
    # about 1.6 inches of the height go to the title and the source labels).
    bar_inches = 0.2
    bar = figure.colorbar(image, ax=axes, fraction=1.5 * bar_inches * DPI / width, pad=0.02,
                          aspect=max(10.0, (height / DPI - 1.6) / bar_inches))
    bar.set_label("attention weight (each row sums to 1)", fontsize=LABEL_SIZE)
    return save(figure, path)


def _remove_earlier_heatmaps(out: Path) -> None:
    """Delete the heatmaps an earlier `attention` into OUT wrote (as OUT/analysis.json lists them):
    with fewer sentences now, the report would show the old ones beside the new."""
    earlier = read_index(out).get("attention")
    for name in earlier.get("files", []) if isinstance(earlier, dict) else []:
        if re.fullmatch(r"attention-\d+\.png", str(name)):
            (out / name).unlink(missing_ok=True)


def analyze_attention(checkpoint: Path, sentences: Sequence[str], out: Path, *, beam: Optional[int] = None,
                      device: str = "cpu") -> list[Path]:
    """OUT/attention-N.png for each sentence and OUT/attention.json: each sentence's pieces and weights.
    OUT is made once the checkpoint is known to have attention: a refusal leaves nothing behind."""
    from nmt.analyze.vectors import load_translator
    from nmt.decode.attention import require_attention

    translator = load_translator(checkpoint, device)
    require_attention(translator.model, str(checkpoint))
    out = output_folder(out)
    _remove_earlier_heatmaps(out)
    options = translator.options(beam=beam, n_best=1, option_name=lambda key: "--" + key.replace("_", "-"))
    best = [hyps[0] for hyps in translator.translate(sentences, options)]
    maps = translator.attention(sentences, [t.tokens for t in best])
    digits = len(str(len(maps)))
    written, shown = [], []
    kind = translator.config.model.attention
    for number, attention_map in enumerate(maps, 1):
        name = f"attention-{number:0{digits}d}.png"
        written.append(plot_heatmap(attention_map, f"Attention ({kind}) of sentence {number}", out / name))
        shown.append({"sentence": number, "image": name, **attention_map.as_dict()})
    written.append(write_json(out / "attention.json", {
        "checkpoint": str(checkpoint), "attention": kind, "beam": options.beam,
        "note": "weights[t][j]: target piece t's weight on source piece j (source in reading order; "
                "the last target piece </s> is the end of the sentence); each row sums to 1",
        "sentences": shown}))
    record(out, "attention", {"checkpoint": str(checkpoint), "sentences": len(maps), "beam": options.beam}, written)
    return written
