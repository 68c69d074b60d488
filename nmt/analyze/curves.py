"""Training curves of one or more runs, read from each run folder's log.jsonl.

The log holds one JSON object per event (nmt/train/progress.py): "train" (step, epoch, lr,
loss, ppl, tgt_tokens_per_second), "valid" (step, ppl, optionally bleu) and "epoch", each with
its wall-clock `time`. Each quantity is drawn twice, against steps and against wall time in
minutes since the run's first event, with every run overlaid.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from nmt.analyze.outputs import record, write_csv
from nmt.analyze.plots import add_legend, log_scale_y, new_figure, save
from nmt.errors import DataError


@dataclass
class Run:
    name: str  # the legend's name: the run folder's name, longer where two runs share it
    train: list[dict]  # "train" events in step order, one per step
    valid: list[dict]  # "valid" events likewise, each with loss = ln(ppl) added
    start: float | None  # time of the log's first event (seconds since the epoch); None: no times


# (file stem, title, y label, y scale, [(events, key, series name)]); y scale "log" (perplexity;
# a halving learning rate shows as equal steps) where every value is positive, "zero": linear from 0.
PANELS = [
    ("loss", "Loss", "loss (nats / target token)", "linear", [("train", "loss", "train"), ("valid", "loss", "dev")]),
    ("ppl", "Perplexity", "perplexity", "log", [("train", "ppl", "train"), ("valid", "ppl", "dev")]),
    ("bleu", "Dev BLEU (greedy)", "BLEU", "zero", [("valid", "bleu", "dev")]),
    ("lr", "Learning rate", "learning rate", "log", [("train", "lr", "")]),
    ("speed", "Training speed", "target tokens / s", "zero", [("train", "tgt_tokens_per_second", "")]),
]
X_AXES = [("steps", "step", "training step"), ("time", "minutes", "wall time (minutes)")]
CSV_KEYS = ["step", "epoch", "minutes", "loss", "ppl", "lr", "tgt_tokens_per_second", "bleu"]


def read_events(folder: Path) -> list[dict]:
    """The events of folder/log.jsonl; a half-written last line (a run still writing) is left out."""
    if not folder.is_dir():
        what = "not found" if not folder.exists() else "is a file, not a run folder"
        raise DataError(f"run folder {folder} {what}: pass the folder nmt train wrote (train.run_dir)")
    path = folder / "log.jsonl"
    if not path.is_file():
        raise DataError(f"{folder} has no log.jsonl: pass a run folder written by nmt train (train.run_dir)")
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    events = []
    for number, line in enumerate(lines, 1):
        try:
            if line.strip():
                events.append(json.loads(line))
        except ValueError:
            if number == len(lines):  # no newline after it: the writer was interrupted mid-line
                break
            raise DataError(f"{path} line {number} is not JSON: the log is damaged; "
                            f"remove that line or pass another run") from None
    if not any(isinstance(e, dict) and e.get("event") in ("train", "valid") for e in events):
        raise DataError(f"{path} holds no train or valid events: let the run report at least once "
                        f"(train.log_every steps) before plotting it")
    return [e for e in events if isinstance(e, dict)]


def _by_step(events: list[dict], kind: str) -> list[dict]:
    """The events of one kind in step order; a resumed run repeats the steps after its last
    checkpoint, and the later report of a step is the one the run continued from."""
    latest = {e["step"]: e for e in events if e.get("event") == kind and "step" in e}
    return [latest[step] for step in sorted(latest)]


def run_names(folders: list[Path]) -> list[str]:
    """Each folder's name, with as many parent folders as it takes to tell them apart."""
    parts = [folder.resolve().parts for folder in folders]
    for depth in range(1, max(map(len, parts)) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{name} ({i + 1})" for i, name in enumerate(names)]  # the same folder twice


def read_run(folder: Path, name: str) -> Run:
    events = read_events(folder)
    valid = _by_step(events, "valid")
    for event in valid:
        if isinstance(event.get("ppl"), (int, float)) and event["ppl"] > 0:
            event["loss"] = math.log(event["ppl"])  # the dev loss per target token, as train's
    start = min((e["time"] for e in events if isinstance(e.get("time"), (int, float))), default=None)
    return Run(name, _by_step(events, "train"), valid, start)


def _minutes(run: Run, event: dict) -> float | None:
    time = event.get("time")
    return (time - run.start) / 60 if isinstance(time, (int, float)) and run.start is not None else None


def _points(run: Run, kind: str, key: str, x_key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for event in run.train if kind == "train" else run.valid:
        value, x = event.get(key), _minutes(run, event) if x_key == "minutes" else event["step"]
        if isinstance(value, (int, float)) and math.isfinite(value) and x is not None:
            xs.append(x)
            ys.append(value)
    return xs, ys


def plot_panel(runs: list[Run], panel, x_axis, path: Path) -> Path | None:
    """One quantity against one x axis, every run overlaid; None where no run has the data."""
    _, title, ylabel, y_scale, series = panel
    _, x_key, xlabel = x_axis
    curves = [(i, name, _points(run, kind, key, x_key)) for i, run in enumerate(runs)
              for kind, key, name in series]
    curves = [c for c in curves if c[2][0]]
    if not curves:
        return None
    heading = f"{title} against {xlabel.split(' (')[0]}" + (f": {runs[0].name}" if len(runs) == 1 else "")
    figure, axes = new_figure(heading, xlabel, ylabel)
    for run_index, series_name, (xs, ys) in curves:
        label = " ".join(part for part in (runs[run_index].name if len(runs) > 1 else "", series_name) if part)
        sparse = series_name == "dev" or len(xs) < 3  # few points: show each one
        axes.plot(xs, ys, color=f"C{run_index % 10}", linestyle="--" if series_name == "dev" else "-",
                  marker="o" if sparse else None, markersize=4, linewidth=1.5, label=label or None,
                  clip_on=not sparse)  # markers on the frame (BLEU 0) are drawn whole
    values = [y for *_, (_, ys) in curves for y in ys]
    if y_scale == "log":
        log_scale_y(axes, values)
    elif y_scale == "zero":  # all zeros (an early dev BLEU) would otherwise get a range of 0.05
        axes.set_ylim(0, max(values) * 1.08 if max(values) > 0 else 1)
    add_legend(axes)
    return save(figure, path)


def _summary(run: Run) -> list:
    last = run.train[-1] if run.train else {}
    with_bleu = [e for e in run.valid if isinstance(e.get("bleu"), (int, float))]
    best_bleu = max(with_bleu, key=lambda e: e["bleu"]) if with_bleu else {}
    dev_ppl = [e["ppl"] for e in run.valid if isinstance(e.get("ppl"), (int, float))]
    speeds = [e["tgt_tokens_per_second"] for e in run.train if isinstance(e.get("tgt_tokens_per_second"), (int, float))]
    minutes = [m for m in map(lambda e: _minutes(run, e), run.train + run.valid) if m is not None]
    return [run.name, max([e["step"] for e in run.train + run.valid], default=None),
            round(max(minutes), 3) if minutes else None, last.get("loss"),
            min(dev_ppl, default=None), best_bleu.get("bleu"), best_bleu.get("step"),
            statistics.median(speeds) if speeds else None]


SUMMARY_HEADER = ["run", "last step", "wall minutes", "last train loss", "best dev ppl", "best dev BLEU",
                  "step of best BLEU", "median target tokens / s"]


def write_numbers(runs: list[Run], out: Path) -> list[Path]:
    rows = []
    for run in runs:
        for kind, events in (("train", run.train), ("valid", run.valid)):
            for e in events:
                minutes = _minutes(run, e)
                values = {**e, "minutes": round(minutes, 4) if minutes is not None else None}
                rows.append([run.name, kind] + [values.get(key) for key in CSV_KEYS])
    return [write_csv(out / "curves_summary.csv", SUMMARY_HEADER, [_summary(run) for run in runs]),
            write_csv(out / "curves.csv", ["run", "event"] + CSV_KEYS, rows)]


def analyze_curves(folders: list[Path], out: Path) -> list[Path]:
    """Plots (PANEL_steps.png, PANEL_time.png) and their numbers (curves.csv) into `out`."""
    runs = [read_run(folder, name) for folder, name in zip(folders, run_names(folders))]
    written = []
    for panel in PANELS:
        for x_axis in X_AXES:
            path = plot_panel(runs, panel, x_axis, out / f"{panel[0]}_{x_axis[0]}.png")
            written += [path] if path else []
    written += write_numbers(runs, out)
    record(out, "curves", {"runs": [str(f) for f in folders]}, written)
    return written
