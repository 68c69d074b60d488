"""The paper's multi-GPU layout: each LSTM layer on its own device, time flowing as a wavefront,
and the softmax split by vocabulary across devices.

Wavefront: the sequence is cut into chunks of `chunk` time steps; at wave w, layer k works on
chunk w - k. The host issues the work in that order and never waits, so the device of layer k
runs chunk t while the device of layer k + 1 runs chunk t - 1 (CUDA work is asynchronous per
device; cross-device copies order themselves).

Split softmax: each slice of the vocabulary computes its logits, their log-sum-exp and (where
the target falls in it) the target's logit on its own device; the loss combines the per-slice
log-sum-exps, so the full logits are never gathered:
    loss_t = logsumexp_s(lse_s) - z_{y_t}
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def spread(devices: list[str], layers: int) -> list[torch.device]:
    """Layer k's device: `devices` itself if it names one per layer, else contiguous blocks."""
    if len(devices) == layers:
        return [torch.device(d) for d in devices]
    return [torch.device(devices[k * len(devices) // layers]) for k in range(layers)]


def wavefront(layers, devices, x: torch.Tensor, states: list, *, chunk: int, dropout: float, training: bool):
    """Run single-layer RNNs `layers[k]` (on `devices[k]`) over x (B, S, I) chunk by chunk.

    `states[k]` is layer k's initial (h, c) or None. Returns the top layer's outputs (B, S, H)
    on the last device and every layer's final state.
    """
    chunks = list(x.split(chunk, dim=1))
    outputs = [[None] * len(chunks) for _ in layers]
    states = list(states)
    for wave in range(len(chunks) + len(layers) - 1):
        for k, (layer, device) in enumerate(zip(layers, devices)):
            t = wave - k
            if not 0 <= t < len(chunks):
                continue
            inputs = (chunks[t] if k == 0 else outputs[k - 1][t]).to(device, non_blocking=True)
            if k > 0:
                inputs = F.dropout(inputs, dropout, training)
            outputs[k][t], states[k] = layer(inputs, states[k])
    return torch.cat(outputs[-1], dim=1), states


class SplitOutput(nn.Module):
    """The output layer as vocabulary slices, each of which may sit on its own device."""

    def __init__(self, hidden: int, vocab: int, parts: int):
        super().__init__()
        bounds = [vocab * i // parts for i in range(parts + 1)]
        self.starts = bounds[:-1]
        self.slices = nn.ModuleList(nn.Linear(hidden, hi - lo) for lo, hi in zip(bounds, bounds[1:]))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Full logits (..., V) on hidden's device: for decoding, where the whole row is needed."""
        return torch.cat([s(hidden.to(s.weight.device)).to(hidden.device) for s in self.slices], dim=-1)

    def loss(self, hidden: torch.Tensor, targets: torch.Tensor, *, ignore_index: int,
             label_smoothing: float = 0.0) -> torch.Tensor:
        """Summed cross-entropy of hidden (N, H) against targets (N,), never gathering the logits."""
        home = hidden.device
        lses, picked, sums, vocab = [], [], [], 0
        for start, layer in zip(self.starts, self.slices):
            device, size = layer.weight.device, layer.out_features
            logits = layer(hidden.to(device)).float()  # (N, V_s)
            local = targets.to(device) - start
            inside = (local >= 0) & (local < size)
            target_logit = logits.gather(1, local.clamp(0, size - 1).unsqueeze(1)).squeeze(1)
            lses.append(torch.logsumexp(logits, dim=-1).to(home))
            picked.append(torch.where(inside, target_logit, 0.0).to(home))
            if label_smoothing:
                sums.append(logits.sum(-1).to(home))
            vocab += size
        lse = torch.logsumexp(torch.stack(lses), dim=0)
        loss = lse - torch.stack(picked).sum(0)
        if label_smoothing:  # torch's definition: (1 - e) * nll + e * mean over the vocabulary of -log p
            loss = (1 - label_smoothing) * loss + label_smoothing * (lse - torch.stack(sums).sum(0) / vocab)
        return torch.where(targets.to(home) != ignore_index, loss, 0.0).sum()
