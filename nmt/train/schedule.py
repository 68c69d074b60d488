"""Every learning-rate rule in one object: warm-up, the paper's halving, decay on a plateau.

The paper: 0.7 for 5 epochs, then halved every half epoch (`schedule: halving`). The plateau
rule instead multiplies the rate by `decay_factor` whenever the dev score has not improved for
`plateau_patience` evaluations. Either way a linear warm-up can scale the first updates.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from nmt.config import TrainConfig


def learning_rate(epoch: float, *, lr: float, decay_start: float, decay_every: float, factor: float) -> float:
    """The halving rate at fractional epoch `epoch` (0.5 = half way through the first epoch).

    At epoch 5.0 the first halving has happened (0.35); at 5.5 the second (0.175); and so on.
    """
    if epoch < decay_start:
        return lr
    return lr * factor ** (math.floor((epoch - decay_start) / decay_every + 1e-9) + 1)


class LearningRateSchedule:
    def __init__(self, t: TrainConfig):
        self.t = t
        self.plateau_lr: Optional[float] = None  # the plateau rule's current rate (None: not decayed yet)

    def rate(self, step: int, epoch_progress: float) -> float:
        """The rate for update `step` (0-based) at fractional epoch `epoch_progress`."""
        t = self.t
        if t.schedule == "halving":
            lr = learning_rate(epoch_progress, lr=t.lr, decay_start=t.decay_start_epoch,
                               decay_every=t.decay_every_epochs, factor=t.decay_factor)
        else:
            lr = self.plateau_lr if self.plateau_lr is not None else t.lr
        if step < t.warmup_steps:
            lr *= (step + 1) / t.warmup_steps
        return lr

    def after_evaluation(self, evals_since_best: int) -> Optional[str]:
        """The plateau rule, told how many evaluations in a row brought no better dev score;
        returns a message when it lowered the rate."""
        t = self.t
        if t.schedule != "plateau" or evals_since_best == 0 or evals_since_best % t.plateau_patience:
            return None
        current = self.plateau_lr if self.plateau_lr is not None else t.lr
        self.plateau_lr = max(t.min_lr, current * t.decay_factor)
        return f"dev score flat for {t.plateau_patience} evaluations: lr {self.plateau_lr:.3g}"

    def state_dict(self) -> dict:
        return {"plateau_lr": self.plateau_lr}

    def load_state_dict(self, state: dict) -> None:
        self.plateau_lr = state.get("plateau_lr")


def set_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group the rate; a tensor rate (inside CUDA graphs) is filled in place."""
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr

