"""The paper's optimisation: the halving learning rate and hard norm clipping."""

from __future__ import annotations

import pytest
import torch

from nmt.train.schedule import clip_gradient_norm, learning_rate

PAPER = dict(lr=0.7, decay_start=5.0, decay_every=0.5, factor=0.5)


@pytest.mark.parametrize("epoch,expected", [
    (0.0, 0.7), (0.5, 0.7), (4.5, 0.7), (4.999, 0.7),  # 0.7 for the first five epochs
    (5.0, 0.35), (5.25, 0.35),  # after 5 epochs: halve ...
    (5.5, 0.175), (6.0, 0.0875), (6.5, 0.04375), (7.0, 0.021875), (7.49, 0.021875),  # ... every half epoch
])
def test_learning_rate_matches_the_paper_at_every_half_epoch(epoch, expected):
    assert learning_rate(epoch, **PAPER) == pytest.approx(expected, rel=1e-12)


def grads_with_norm(norm: float, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.zeros(shape)) for shape in [(3, 4), (7,), (2, 2, 2)]]
    raw = [torch.randn(p.shape, generator=g) for p in params]
    total = torch.sqrt(sum((r.double() ** 2).sum() for r in raw))
    for p, r in zip(params, raw):
        p.grad = (r.double() * norm / total).float()
    return params


def test_clipping_scales_to_exactly_max_norm_when_above():
    params = grads_with_norm(12.5)
    before = [p.grad.clone() for p in params]
    s = clip_gradient_norm(params, 5.0)
    assert float(s) == pytest.approx(12.5, rel=1e-6)
    for p, g in zip(params, before):  # g = 5 g / s
        torch.testing.assert_close(p.grad, g * (5.0 / s), rtol=0, atol=0)
    total = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params))
    assert float(total) == pytest.approx(5.0, rel=1e-6)


def test_clipping_leaves_small_gradients_bit_for_bit():
    params = grads_with_norm(4.99)
    before = [p.grad.clone() for p in params]
    clip_gradient_norm(params, 5.0)
    assert all(torch.equal(p.grad, g) for p, g in zip(params, before))
