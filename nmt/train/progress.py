"""What a run reports: a one-line progress bar on the console, a JSONL log in the run folder (and
the same numbers as TensorBoard scalars, with train.tensorboard), and the loss and token counts
of the steps since the last report.

Everything else a run says (starting, evaluations, warnings) goes through the `logging` module
under the name `nmt` (see nmt/log.py).
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path

import torch

from nmt.errors import NmtError


class Window:
    """Loss and token counts since the last report; the loss stays on the device until read."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.tokens = self.all_tokens = 0
        self.restart_clock()

    def add(self, loss: torch.Tensor, tokens: int, all_tokens: int) -> None:
        """`tokens`: this process's target tokens (what `loss` sums over); `all_tokens`: every process's."""
        self.loss += loss.to(self.loss.device)
        self.tokens += tokens
        self.all_tokens += all_tokens

    def take(self) -> tuple[float, int, int]:
        """(summed loss, its tokens, all processes' tokens) since the last take."""
        loss, tokens, all_tokens = self.loss.item(), self.tokens, self.all_tokens
        self.loss.zero_()
        self.tokens = self.all_tokens = 0
        self.restart_clock()
        return loss, tokens, all_tokens

    def seconds(self) -> float:
        return time.time() - self.started

    def restart_clock(self) -> None:
        self.started = time.time()


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Redraws one line on a terminal; prints a line per report when stderr is a file or pipe.

    The ETA is the pace of the last `window` reports, so that it follows a machine that slows
    down (another process on the same cores) or speeds up, rather than the average since the start.
    """

    def __init__(self, total_steps: int | None, stream=None, window: int = 5):
        self.total_steps = total_steps
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.recent: collections.deque = collections.deque(maxlen=window + 1)  # (time, step) of reports

    def eta(self, step: int, now: float) -> str:
        """' | ETA m:ss' at the pace of the recent reports ('' until there are two)."""
        self.recent.append((now, step))
        then, earlier_step = self.recent[0]
        if not self.total_steps or step <= earlier_step:
            return ""
        return f" | ETA {_duration((now - then) / (step - earlier_step) * (self.total_steps - step))}"

    def update(self, *, step: int, epoch: float, loss: float, lr: float, tokens_per_second: float) -> None:
        head = f"step {step}/{self.total_steps}" if self.total_steps else f"step {step}"
        eta = self.eta(step, time.time())
        line = (f"{head} | epoch {epoch:.2f} | loss {loss:.3f} | lr {lr:.4g} | "
                f"{tokens_per_second:,.0f} tgt tok/s{eta}")
        if self.interactive:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class JsonlLog:
    """Appends one JSON object per event to run_dir/log.jsonl, and with `tensorboard` also writes its
    numbers as TensorBoard scalars into run_dir/tensorboard/: the one place a run's reports go.

    A scalar is tagged event/key (train/loss, valid/bleu, epoch/padding_fraction, ...) and plotted at
    the event's step; an event without one (an epoch's start) takes the last step seen. A resumed
    run passes its checkpoint's step as `first_step`: TensorBoard then drops what the interrupted
    attempt wrote after it, as the resumed run writes those steps again.
    """

    def __init__(self, path: Path | None, *, tensorboard: bool = False, first_step: int = 0):
        self.path = path  # None: write nothing (the other processes of a torchrun job)
        self.step = first_step
        self.board = None
        if tensorboard and path is not None:
            self.board = tensorboard_writer(path.parent / TENSORBOARD, purge_step=first_step + 1 if first_step else None)

    def write(self, **record) -> None:
        if self.path is None:
            return
        record.setdefault("time", round(time.time(), 3))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.board is not None:
            self._write_scalars(record)

    def _write_scalars(self, record: dict) -> None:
        self.step = record.get("step", self.step)
        for key, value in record.items():
            if key not in ("event", "step", "time") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.board.add_scalar(f"{record['event']}/{key}", value, global_step=self.step, walltime=record["time"])
        self.board.flush()  # reports are seldom: each is on disk at once, as log.jsonl's line is


TENSORBOARD = "tensorboard"  # the run folder's subfolder of event files


def tensorboard_writer(folder: Path, purge_step: int | None = None):
    """A SummaryWriter into `folder`; a user error where the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise NmtError("train.tensorboard: true needs the tensorboard package, which is not installed: "
                       "pip install 'nmt[tensorboard]' (or pip install tensorboard), or set train.tensorboard: false"
                       ) from None
    return SummaryWriter(log_dir=str(folder), purge_step=purge_step)


def read_log(path: Path) -> list[dict]:
    """The events a JsonlLog wrote, in order."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
