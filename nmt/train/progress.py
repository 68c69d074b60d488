"""What a run reports: a one-line progress bar on the console and a JSONL log in the run folder."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Redraws one line on a terminal; prints a line per report when stderr is a file or pipe."""

    def __init__(self, total_steps: int | None, stream=None):
        self.total_steps = total_steps
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.started = time.time()
        self.first_step: int | None = None

    def update(self, *, step: int, epoch: float, loss: float, lr: float, tokens_per_second: float) -> None:
        if self.first_step is None:  # the pace is measured from the first report on, after start-up
            self.first_step, self.started = step, time.time()
        eta = ""
        head = f"step {step}/{self.total_steps}" if self.total_steps else f"step {step}"
        if self.total_steps and step > self.first_step:
            remaining = (time.time() - self.started) / (step - self.first_step) * (self.total_steps - step)
            eta = f" | ETA {_duration(remaining)}"
        line = (f"{head} | epoch {epoch:.2f} | loss {loss:.3f} | lr {lr:.4g} | "
                f"{tokens_per_second:,.0f} tgt tok/s{eta}")
        if self.interactive:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.interactive else "") + text + "\n")
        self.stream.flush()


class JsonlLog:
    """Appends one JSON object per event to run_dir/log.jsonl."""

    def __init__(self, path: Path | None):
        self.path = path  # None: write nothing (the other processes of a torchrun job)

    def write(self, **record) -> None:
        if self.path is None:
            return
        record.setdefault("time", round(time.time(), 3))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def read_log(path: Path) -> list[dict]:
    """The events a JsonlLog wrote, in order."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
