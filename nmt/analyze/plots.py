"""The shared look of every figure, and how figures are saved.

Every figure is 8 x 5 inches at 100 dpi, so every PNG is exactly 800 x 500 pixels (an attention
heatmap is at least that, and grows with its sentence: nmt/analyze/attention.py). We lay it out
with `tight_layout` and save without `bbox_inches="tight"`, which would crop the canvas to its
contents and change the size; instead anything drawn outside the axes (tick labels, the legend)
is kept inside the canvas by tight_layout, and text inside the axes by `fit_texts`.

Figures are built with matplotlib's object API (`Figure`), never pyplot: no display, no global
figure list, and saving to PNG uses the Agg renderer without switching the process's backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

SIZE = (8, 5)  # inches
DPI = 100
PIXELS = (SIZE[0] * DPI, SIZE[1] * DPI)  # (width, height)

TITLE_SIZE = 14
LABEL_SIZE = 12
TICK_SIZE = 10
LEGEND_SIZE = 10
TEXT_SIZE = 9  # labels of points and counts written inside the axes


def new_figure(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = SIZE):
    """A figure with one axes, titled and labelled; returns (figure, axes). `size` in inches."""
    figure = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(figure)  # the renderer that measures text (fit_texts) and writes PNGs
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=TITLE_SIZE)
    axes.set_xlabel(xlabel, fontsize=LABEL_SIZE)
    axes.set_ylabel(ylabel, fontsize=LABEL_SIZE)
    axes.tick_params(labelsize=TICK_SIZE)
    axes.grid(True, alpha=0.3)
    return figure, axes


def add_legend(axes, *, title: str | None = None) -> None:
    """A legend, only where there are several series to tell apart."""
    handles, labels = axes.get_legend_handles_labels()
    if len(labels) > 1:
        axes.legend(fontsize=LEGEND_SIZE, title=title, title_fontsize=LEGEND_SIZE, loc="best", framealpha=0.85)


def log_scale_y(axes, values: Iterable[float]) -> bool:
    """A log-scale y axis labelled with plain numbers, where every value is positive; True if applied.

    Over a decade or more the ticks sit at 1, 2 and 5 of each decade; over less (a late stretch of
    training) that would leave one tick or none, so there they are evenly spaced numbers instead.
    """
    values = list(values)
    if not values or min(values) <= 0:
        return False
    axes.set_yscale("log")
    wide = max(values) >= 10 * min(values)
    axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)) if wide else MaxNLocator(nbins=6))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_ylabel(axes.get_ylabel() + " (log scale)")
    return True


def fit_texts(figure, axes, texts: Iterable, *, passes: int = 3) -> None:
    """Widen the axes' limits until every text drawn in data coordinates lies inside them.

    Labels next to points near the edge would otherwise run over the frame and be clipped by
    the canvas. Each pass measures the texts as drawn, converts their boxes to data coordinates
    and grows the limits; a few passes settle, because growing the limits shrinks the texts'
    extent in data units.
    """
    texts = list(texts)
    for _ in range(passes):
        # Lay out and draw first: the limits' autoscaling and the axes' size in pixels are settled
        # only then, and both go into converting a text's box from pixels to data units.
        figure.tight_layout()
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        (x0, x1), (y0, y1) = axes.get_xlim(), axes.get_ylim()
        to_data = axes.transData.inverted()
        new = [x0, x1, y0, y1]
        for text in texts:
            box = text.get_window_extent(renderer).transformed(to_data)
            new = [min(new[0], box.x0), max(new[1], box.x1), min(new[2], box.y0), max(new[3], box.y1)]
        if new == [x0, x1, y0, y1]:
            return
        pad_x, pad_y = 0.02 * (new[1] - new[0]), 0.02 * (new[3] - new[2])
        axes.set_xlim(new[0] - pad_x, new[1] + pad_x)
        axes.set_ylim(new[2] - pad_y, new[3] + pad_y)


def _text_box(text, renderer):
    """The box of a label's text alone (an Annotation's own extent includes its leader line)."""
    return Text.get_window_extent(text, renderer)


def separate_texts(figure, texts: Iterable, *, tries: int = 40) -> None:
    """Move overlapping labels (Annotations placed with an offset in points) a line down or up,
    then two lines, and so on, to the nearest place where none overlaps a label placed before it;
    labels are taken from the top of the plot down."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    placed = []
    for text in sorted(texts, key=lambda t: -_text_box(t, renderer).y1):
        x, y = text.xyann
        step = _text_box(text, renderer).height * 72 / figure.dpi  # one line, in points
        for k in range(tries):
            shift = (k + 1) // 2 * (1 if k % 2 == 0 else -1)  # 0, -1, +1, -2, +2, ... lines
            text.xyann = (x, y + shift * step)
            box = _text_box(text, renderer)
            if not any(box.overlaps(other) for other in placed):
                break
        placed.append(box)


def save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI, format="png")
    return path
