"""Non-monotonically triggered averaged SGD (Merity et al. 2017, AWD-LSTM): plain SGD until the
dev score has not improved for `asgd_patience` evaluations, then the running mean of the weights
of every later step is what is evaluated and saved.

Written here rather than with torch.optim.swa_utils.AveragedModel: its update asks the device
whether it has averaged anything yet (a host synchronisation at every step); this one keeps the
count on the host and updates with one fused `torch._foreach_lerp_` per step.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch


class WeightAverage:
    def __init__(self, parameters: list[torch.nn.Parameter]):
        self.parameters = parameters
        self.mean: Optional[list[torch.Tensor]] = None  # None until averaging starts
        self.count = 0

    @property
    def active(self) -> bool:
        return self.mean is not None

    def start(self) -> None:
        self.mean = [p.detach().clone() for p in self.parameters]
        self.count = 1

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the mean: mean += (w - mean) / (count + 1)."""
        if self.mean is None:
            return
        self.count += 1
        torch._foreach_lerp_(self.mean, [p.detach() for p in self.parameters], 1.0 / self.count)

    @contextlib.contextmanager
    def swapped(self):
        """The averaged weights in the model for the duration (evaluation, saving), the trained
        ones back afterwards, bit for bit; yields the trained weights (None when not averaging)."""
        if self.mean is None:
            yield None
            return
        trained = [p.detach().clone() for p in self.parameters]
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in self.parameters], self.mean)
        try:
            yield trained
        finally:
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.parameters], trained)

    def resume(self, count: int, trained: list[torch.Tensor]) -> None:
        """After a checkpoint's weights (the mean, when averaging) were loaded into the model:
        take them as the mean, and put the trained weights saved beside them back."""
        if not count:
            return
        self.mean = [p.detach().clone() for p in self.parameters]
        self.count = count
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in self.parameters], [t.to(p.device) for t, p in zip(trained, self.parameters)])
