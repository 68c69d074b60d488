"""The paper's optimisation: the halving learning rate, the other rules of the schedule, and
hard norm clipping (torch's clip_grad_norm_, checked against the paper's rule)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nmt.config import TrainConfig
from nmt.train.schedule import LearningRateSchedule, learning_rate

PAPER = dict(lr=0.7, decay_start=5.0, decay_every=0.5, factor=0.5)


@pytest.mark.parametrize("epoch,expected", [
    (0.0, 0.7), (0.5, 0.7), (4.5, 0.7), (4.999, 0.7),  # 0.7 for the first five epochs
    (5.0, 0.35), (5.25, 0.35),  # after 5 epochs: halve ...
    (5.5, 0.175), (6.0, 0.0875), (6.5, 0.04375), (7.0, 0.021875), (7.49, 0.021875),  # ... every half epoch
])
def test_learning_rate_matches_the_paper_at_every_half_epoch(epoch, expected):
    assert learning_rate(epoch, **PAPER) == pytest.approx(expected, rel=1e-12)
    assert LearningRateSchedule(TrainConfig()).rate(step=10_000, epoch_progress=epoch) == pytest.approx(expected)


def test_warmup_scales_the_first_updates_linearly():
    schedule = LearningRateSchedule(TrainConfig(warmup_steps=4, lr=1.0))
    assert [schedule.rate(step, 0.0) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_plateau_rule_decays_after_patience_flat_evaluations_and_saves_its_state():
    t = TrainConfig(schedule="plateau", lr=1.0, plateau_patience=2, decay_factor=0.5, min_lr=0.3)
    schedule = LearningRateSchedule(t)
    assert schedule.after_evaluation(1) is None and schedule.rate(0, 0.0) == 1.0
    assert "lr 0.5" in schedule.after_evaluation(2) and schedule.rate(0, 9.0) == 0.5  # no halving by epoch
    schedule.after_evaluation(3)
    schedule.after_evaluation(4)
    assert schedule.rate(0, 0.0) == 0.3  # never below min_lr
    restored = LearningRateSchedule(t)
    restored.load_state_dict(schedule.state_dict())
    assert restored.rate(0, 0.0) == 0.3
    halving = LearningRateSchedule(dataclasses.replace(t, schedule="halving"))
    assert halving.after_evaluation(2) is None  # the plateau rule only runs when chosen


def paper_clipping(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """The paper's rule as written: s = ||g||_2 over all gradients; if s > max_norm, g = max_norm g / s."""
    s = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
    return [g.double() * (max_norm / s) if s > max_norm else g.double() for g in grads]


def grads_with_norm(norm: float, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.zeros(shape)) for shape in [(3, 4), (7,), (2, 2, 2)]]
    raw = [torch.randn(p.shape, generator=g) for p in params]
    total = torch.sqrt(sum((r.double() ** 2).sum() for r in raw))
    for p, r in zip(params, raw):
        p.grad = (r.double() * norm / total).float()
    return params


@pytest.mark.parametrize("norm", [12.5, 5.0001, 1e4])
def test_torch_clipping_is_the_papers_rule_when_above(norm):
    params = grads_with_norm(norm)
    expected = paper_clipping([p.grad for p in params], 5.0)
    s = torch.nn.utils.clip_grad_norm_(params, 5.0, foreach=True)
    assert float(s) == pytest.approx(norm, rel=1e-6)
    for p, e in zip(params, expected):  # torch divides by s + 1e-6: equal to float tolerance
        torch.testing.assert_close(p.grad.double(), e, rtol=1e-6, atol=1e-9)
    total = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params))
    assert float(total) == pytest.approx(5.0, rel=1e-6)


def test_clipping_leaves_small_gradients_bit_for_bit():
    params = grads_with_norm(4.99)
    before = [p.grad.clone() for p in params]
    torch.nn.utils.clip_grad_norm_(params, 5.0, foreach=True)
    assert all(torch.equal(p.grad, g) for p, g in zip(params, before))


def test_the_eta_follows_the_recent_pace():
    """A machine that slows down (a busy neighbour) shows it in the ETA within a few reports."""
    from nmt.train.progress import Progress

    progress = Progress(total_steps=1000, stream=open("/dev/null", "w"), window=3)
    now, etas = 0.0, []
    for step in range(50, 1000, 50):
        now += 1.0 if step <= 400 else 10.0  # 50 steps a second, then ten times slower
        etas.append(progress.eta(step, now))
    assert etas[0] == ""  # one report: no pace yet
    assert etas[6] == " | ETA 0:13"  # step 350: 650 steps at 50 a second
    assert etas[12] == " | ETA 1:10"  # step 650, only slow reports in the window: 350 steps at 5 a second
