"""When a run stops: step, time and epoch budgets, early stopping, signals, and a streak of
updates with a NaN or inf loss or gradient."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Optional

import torch

from nmt.config import TrainConfig
from nmt.errors import TrainingError

log = logging.getLogger("nmt")


class NonfiniteGuard:
    """Counts, on the device, the updates skipped for a NaN or inf; the host reads the counts
    only every few steps (`check`), so the step itself never waits."""

    def __init__(self, device: torch.device, total: int = 0):
        zero = lambda: torch.zeros((), dtype=torch.long, device=device)  # noqa: E731
        self.in_a_row, self.worst = zero(), zero()  # worst: the longest streak since the last check
        self.total = zero().fill_(total)
        self.reported = total

    def record(self, bad: torch.Tensor) -> None:
        """Count one update; `bad` is a 0-dim bool tensor. Device work only (captured in graphs)."""
        self.in_a_row.mul_(bad).add_(bad.long())  # reset on a good step
        torch.maximum(self.worst, self.in_a_row, out=self.worst)
        self.total.add_(bad.long())

    def check(self, step: int, limit: int, last_checkpoint: Path) -> int:
        """Warn about new skipped updates; stop the run after `limit` in a row. Returns the total."""
        in_a_row, total = int(self.worst), int(self.total)
        self.worst.copy_(self.in_a_row)  # a streak still running stays counted
        if total > self.reported:
            log.warning(f"warning: {total - self.reported} update(s) skipped for a NaN or inf loss or gradient "
                        f"by step {step}")
        self.reported = total
        if in_a_row >= limit:
            run_dir = last_checkpoint.parent
            raise TrainingError(f"{in_a_row} updates in a row had a NaN or inf loss or gradient at step "
                                f"{step}; the weights were not touched by them and the last good "
                                f"checkpoint is {last_checkpoint}: lower train.lr, check the data, then "
                                f"nmt train --resume {run_dir}")
        return total


class StopRules:
    def __init__(self, t: TrainConfig, world):
        self.t, self.world = t, world
        self.signal: Optional[int] = None  # SIGINT or SIGTERM, once received

    @contextlib.contextmanager
    def catching_signals(self):
        """SIGINT and SIGTERM end the run after the current step (a checkpoint is saved); a
        second Ctrl-C stops at once."""
        def handler(signum, frame):
            if self.signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now, the last checkpoint stays
            self.signal = signum
            log.info(f"received {signal.Signals(signum).name}: saving a checkpoint after this step")

        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    def epochs_done(self, epoch_progress: float) -> Optional[str]:
        return f"trained {self.t.epochs} epochs" if epoch_progress >= self.t.epochs else None

    def budget_spent(self, step: int, seconds: float, evals_since_best: int, device) -> Optional[str]:
        """Why the run stops before update `step + 1`, or None. `seconds`: training time so far."""
        t = self.t
        if t.max_steps is not None and step >= t.max_steps:
            return f"reached train.max_steps={t.max_steps}"
        if t.early_stopping_patience is not None and evals_since_best >= t.early_stopping_patience:
            return f"no better dev score in {t.early_stopping_patience} evaluations (train.early_stopping_patience)"
        out_of_time = t.max_minutes is not None and seconds >= 60 * t.max_minutes
        if self.world.size > 1:
            # A signal or the clock may reach the ranks at different steps: they agree every
            # log_every steps, so that all of them stop (and the first saves) at the same step.
            if step % t.log_every:
                return None
            signalled, out_of_time = self.world.any([self.signal is not None, out_of_time], device)
            if signalled:
                self.signal = self.signal or signal.SIGTERM  # another rank got it
        if self.signal is not None:
            return f"received {signal.Signals(self.signal).name}"
        if out_of_time:
            return f"reached train.max_minutes={t.max_minutes}"
        return None
