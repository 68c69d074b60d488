"""Two Triton kernels for the search step on CUDA, each beside the torch operators it stands for.

    log_softmax(logits)           (R, V) float16 / bf16 / float32 -> float32 log-probabilities,
                                  as F.log_softmax(logits, -1, dtype=torch.float32)
    window_maxima(x, w)           (R, V) -> each window of w values: its maximum and where in the
                                  row that is (the first of equals), as F.max_pool1d(x, w, w,
                                  ceil_mode=True, return_indices=True)

Why by hand: at beam 12 of the paper's model a search step normalises 1,536 rows of 32,000
logits and then finds the maxima of their windows (nmt/decode/topk.py's pruned pick). torch's
log-softmax of float16 logits into float32 took 131.9 µs there on an H200 (2.2 TB/s of the
card's 4.8), its max-pool with indices 54.5 µs; torch has no other form of either that is
faster (scripts/benchmark_normalizer.py: its log-sum-exp forms took 245-498 µs). A kernel that
keeps a row in registers reads the logits once for the log-sum-exp and once more to write
x - lse; the maxima are one pass of (windows x w) tiles. Measured in the same CUDA graphs on
an H200 (benchmarks/README.md, `scripts/benchmark_pick.py --kernels`).

Used for tensors on the device types in ON, where Triton imports (it comes with torch's CUDA
builds on Linux); elsewhere, and for shapes the kernels do not take, torch's operators. The
tests also run the kernels on the CPU through Triton's interpreter (TRITON_INTERPRET=1 before
the import: tests/test_kernels.py).

The results equal torch's up to float32 rounding: log_softmax computes x - lse, where torch
computes x - max - log(sum); both are within a few units in the last place of the exact value.
A row's window maxima and their positions are exactly max-pool's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU builds of torch come without it
    triton = None

ON = ("cuda",)  # device types the kernels run on (tests/test_kernels.py adds "cpu", under the interpreter)


def available(x: torch.Tensor) -> bool:
    return triton is not None and x.device.type in ON and x.dim() == 2 and x.stride(1) == 1 and x.numel() > 0


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """(R, V) logits -> (R, V) float32 log-probabilities, F.log_softmax(logits, -1, dtype=float32)."""
    if not available(logits) or logits.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return F.log_softmax(logits, dim=-1, dtype=torch.float32)
    rows, vocab = logits.shape
    out = torch.empty(rows, vocab, device=logits.device, dtype=torch.float32)
    block = min(2048, triton.next_power_of_2(vocab))
    _log_softmax[(rows,)](logits, out, logits.stride(0), V=vocab, BLOCK=block, num_warps=8 if block >= 2048 else 4)
    return out


def window_maxima(x: torch.Tensor, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, V) -> the maximum of each window of w values (R, C), C = ceil(V / w), in x's dtype, and
    its position in the row (R, C) int64, the first of equal maxima: max_pool1d's with ceil_mode."""
    if not available(x) or w > 1024:
        values, where = F.max_pool1d(x.unsqueeze(1), w, w, ceil_mode=True, return_indices=True)
        return values.squeeze(1), where.squeeze(1)
    rows, vocab = x.shape
    windows = math.ceil(vocab / w)
    values = torch.empty(rows, windows, device=x.device, dtype=x.dtype)
    where = torch.empty(rows, windows, device=x.device, dtype=torch.long)
    lanes = triton.next_power_of_2(w)  # a tile's row: w places, then masked ones
    per_program = max(1, 2048 // lanes)  # windows in one program's tile
    grid = (rows, triton.cdiv(windows, per_program))
    _window_maxima[grid](x, values, where, x.stride(0), V=vocab, C=windows, W=w, LANES=lanes, TILE=per_program,
                         num_warps=4)
    return values, where


if triton is not None:
    # V and C are compile-time constants: one compilation per vocabulary, and loops whose bounds
    # Triton's interpreter can read (it rejects runtime scalars as range bounds under numpy 2).

    @triton.jit
    def _log_softmax(x_ptr, out_ptr, stride, V: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        x_row, out_row = x_ptr + row * stride, out_ptr + row * V
        # the log-sum-exp, online: each lane keeps the maximum of what it has seen and its sum of
        # exp(x - maximum), rescaled when the maximum grows; lanes that saw only -inf add nothing
        top = tl.full([BLOCK], float("-inf"), tl.float32)
        total = tl.zeros([BLOCK], tl.float32)
        for start in range(0, V, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_row + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
            new = tl.maximum(top, x)
            shift = tl.where(new == float("-inf"), 0.0, new)
            total = total * tl.exp(top - shift) + tl.exp(x - shift)
            top = new
        peak = tl.max(top, 0)
        shift = tl.where(peak == float("-inf"), 0.0, peak)
        lse = shift + tl.log(tl.sum(total * tl.exp(top - shift), 0))
        for start in range(0, V, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_row + cols, mask=cols < V, other=0.0).to(tl.float32)
            tl.store(out_row + cols, x - lse, mask=cols < V)

    @triton.jit
    def _window_maxima(x_ptr, values_ptr, where_ptr, stride, V: tl.constexpr, C: tl.constexpr, W: tl.constexpr,
                       LANES: tl.constexpr, TILE: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        window = tl.program_id(1) * TILE + tl.arange(0, TILE)  # (TILE,) this program's windows
        lane = tl.arange(0, LANES)[None, :]
        cols = window[:, None] * W + lane  # (TILE, LANES) their places in the row
        # lanes past w and places past the row are -inf: never a maximum but of a window all -inf,
        # and then the first lane, a place of the window, wins the tie
        x = tl.load(x_ptr + row * stride + cols, mask=(lane < W) & (cols < V), other=float("-inf"))
        best, at = tl.max(x, 1, return_indices=True, return_indices_tie_break_left=True)
        tl.store(values_ptr + row * C + window, best, mask=window < C)
        tl.store(where_ptr + row * C + window, window.to(tl.int64) * W + at, mask=window < C)
