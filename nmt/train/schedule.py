"""The paper's optimisation recipe: a halving learning rate and hard norm clipping."""

from __future__ import annotations

import math

import torch


def learning_rate(epoch: float, *, lr: float, decay_start: float, decay_every: float, factor: float) -> float:
    """The rate at fractional epoch `epoch` (0.5 = half way through the first epoch).

    The paper: 0.7 for 5 epochs, then halved every half epoch. At epoch 5.0 the first halving
    has happened (0.35); at 5.5 the second (0.175); and so on.
    """
    if epoch < decay_start:
        return lr
    return lr * factor ** (math.floor((epoch - decay_start) / decay_every + 1e-9) + 1)


def clip_gradient_norm(parameters, max_norm: float) -> torch.Tensor:
    """The paper's clipping: s = ||g||_2 over all gradients; if s > max_norm then g = max_norm * g / s.

    Unlike torch's clip_grad_norm_ there is no epsilon in the divisor, and gradients under the
    threshold are left exactly as they are. Nothing here waits for the device: the returned
    norm is a tensor.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    home = grads[0].device  # with a layer pipeline the gradients live on several devices
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()).to(home) for g in grads]))
    scale = torch.where(norm > max_norm, max_norm / norm, torch.ones_like(norm))
    by_device: dict = {}
    for g in grads:
        by_device.setdefault(g.device, []).append(g)
    for device, group in by_device.items():
        torch._foreach_mul_(group, scale.to(device=device, dtype=group[0].dtype))
    return norm
