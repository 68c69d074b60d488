"""The output layer and its cross-entropy in one pass over row chunks, for training on the CPU.

The plain way, `F.cross_entropy(output(hidden), targets)`, holds the whole (N, V) logits, their
log-softmax and, in the backward pass, two more (N, V) gradients: 128 sentences of 80 tokens
with an 8,000-word vocabulary are four tensors of 330 MB each. On a CPU that is memory traffic
and page faults, not arithmetic: measured on the 2-core development machine, one thread, a
64-wide layer, 10,368 rows x 8,000 words: 1.48 s per forward and backward, 0.68 s in chunks of
524 rows (`scripts/benchmark_output_loss.py`; `benchmarks/README.md`, "the output layer in row
chunks").

Here each chunk of rows makes its logits z = h W^T + b (n, V), its loss, and, when a gradient
is wanted, the gradient at once: d loss / dz = softmax(z) - (1 - e) onehot(y) - e / V (e the
label smoothing, torch's definition), written over z itself, so only one (n, V) buffer exists
at a time and it stays in cache. The gradients for h, W and b are kept and scaled by the
incoming gradient in the backward pass: the loss is a sum, so that is exact.

PyTorch has no such fused layer (Liger-Kernel's is Triton, for GPUs only), hence this one. On
CUDA the trainer keeps the plain path, which CUDA graphs and bf16 autocast are tuned for.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

# Rows per chunk: about 4M logits (16 MB of float32) at a time, enough rows for an efficient
# matrix product at any vocabulary a recurrent model has (52 rows at 80,000 words); and never
# fewer rows than the layer is wide, so that a chunk's logits are never smaller than the weight's
# gradient. Each chunk adds its share into that whole (V, H) gradient: with the paper's 1000 x
# 32,000 output, chunks of 131 rows read and wrote its 128 MB fifteen times for 1,920 rows, and
# the pass was slower than torch's (5.3 s against 4.5 s on 2 threads); in chunks of 1,000 rows it
# is 1.12-1.20x faster (benchmarks/README.md, "the output layer in row chunks").
CHUNK_LOGITS = 1 << 22


def applies(hidden: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the chunked path is used: float32 on the CPU, outside any autocast, for logits
    larger than one chunk. Below that the whole logits are small and torch's fused path is as fast
    or faster: one chunk ran at 0.57-0.70x its speed for the quickstart's 1,280 rows x 60 words and
    at 0.94-0.98x for 1,000 words (benchmarks/results/output-loss-cpu-df0d371.json)."""
    rows = hidden.numel() // hidden.size(-1) if hidden.size(-1) else 0
    return (hidden.device.type == "cpu" and hidden.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and rows * weight.size(0) > CHUNK_LOGITS)


def output_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                         targets: torch.Tensor, *, ignore_index: int, label_smoothing: float = 0.0,
                         excluded: Optional[torch.Tensor] = None) -> torch.Tensor:
    """sum_i CE(hidden[i] W^T + b, targets[i]) over the rows whose target is not ignore_index,
    as `F.cross_entropy(..., reduction="sum", label_smoothing=...)` computes it.

    hidden (N, H), weight (V, H), bias (V,) or None, targets (N,). `excluded` (K,): vocabulary
    columns whose logits are -inf (a language model never predicts PAD or BOS); not together
    with label smoothing, whose mean over the vocabulary would be -inf there.
    """
    if excluded is not None and label_smoothing:
        raise ValueError("excluded columns and label smoothing do not combine (the smoothing term is -inf)")
    if not torch.is_grad_enabled():  # evaluation: a Function's forward would still make the gradients
        hidden, weight = hidden.detach(), weight.detach()  # of inputs that require them; detached, it
        bias = None if bias is None else bias.detach()  # makes the loss alone
    real = targets != ignore_index
    return _OutputCrossEntropy.apply(hidden[real], weight, bias, targets[real], float(label_smoothing), excluded)


class _OutputCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, smoothing, excluded):  # hidden (N, H), targets (N,)
        vocab = weight.size(0)
        want_hidden, want_weight, want_bias = ctx.needs_input_grad[:3]
        want_bias = want_bias and bias is not None
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight) if want_weight else None
        grad_bias = torch.zeros_like(bias) if want_bias else None
        total = torch.zeros((), dtype=torch.float32)
        rows = max(1, CHUNK_LOGITS // vocab, hidden.size(1))
        for start in range(0, hidden.size(0), rows):
            h, y = hidden[start:start + rows], targets[start:start + rows, None]  # (n, H), (n, 1)
            z = F.linear(h, weight, bias)  # (n, V)
            if excluded is not None:
                z.index_fill_(1, excluded, float("-inf"))
            lse = torch.logsumexp(z, 1)  # (n,)
            nll = lse - z.gather(1, y).squeeze(1)
            if smoothing:  # torch's definition: (1 - e) nll + e (-mean over the vocabulary of log p)
                total += (1 - smoothing) * nll.sum() + smoothing * (lse - z.mean(1)).sum()
            else:
                total += nll.sum()
            if not (want_hidden or want_weight or want_bias):
                continue
            g = z.sub_(lse[:, None]).exp_()  # softmax(z), over z's own memory (n, V)
            g.scatter_add_(1, y, torch.full(y.shape, smoothing - 1.0))
            if smoothing:
                g.sub_(smoothing / vocab)
            if want_hidden:
                torch.mm(g, weight, out=grad_hidden[start:start + rows])
            if want_weight:
                grad_weight.addmm_(g.t(), h)
            if want_bias:
                grad_bias += g.sum(0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total):
        grads = [None if g is None else g * grad_total for g in ctx.saved_tensors]
        return (*grads, None, None, None)
