"""An LSTM layer's recurrence as Triton kernels: one kernel per time step forward, one backward.

Why by hand: at a language model's small batches cuDNN's LSTM is bound by its recurrent matrix
product, a small GEMM per time step (20 rows x 1500 units in Zaremba's recipe), and torch offers
no LSTM kernel that fuses that product with the gates; nor can cuDNN's LSTM with a weight-dropped
recurrent matrix be replayed as a CUDA graph (nmt/train/graphs.py). Here each step is one kernel
that computes the product h_(t-1) W_hh^T for a block of hidden units (all four gates of them)
and, in the same kernel, the gates, the cell and the output of those units; backward, one kernel
per step computes dh_t = dA_(t+1) W_hh for a block of units and, in the same kernel, those units'
gate gradients dA_t. The weight gradient and the input projection stay matrix products over the
whole window. On an H200 Zaremba's window takes 2.97 ms forward and backward against cuDNN's
3.92; at a translation model's 128 rows cuDNN is 1.5x faster, so translation keeps it
(benchmarks/README.md, "The LSTM's recurrence as Triton kernels").

    pre = x W_ih^T + b_ih + b_hh   (B, T, 4H), by the caller (autograd and autocast as usual)
    out, h_n, c_n = recurrence(pre, w_hh, h_0, c_0)

Gate order is torch's (input, forget, cell, output), so the weights are nn.LSTM's own. The cell
state and the gates are kept in float32; the matrix products read the weights and h in the
dtype of `pre` (bfloat16 under autocast) and accumulate in float32.

The kernels run where `available` says (CUDA with Triton); on a CPU, tests run them through
Triton's interpreter (TRITON_INTERPRET=1 before Triton is imported).
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the CPU-only install: nn.LSTM everywhere
    triton = None

ON = ("cuda",)  # devices the kernels run on; the tests add "cpu" under the interpreter
# Tile sizes: rows of the batch, hidden units per program forward and backward, the reduction's
# chunk, warps and pipeline stages, and how many programs share one block's reduction (split K).
# Each program reads its own slice of the recurrent matrix, laid out contiguously once per call
# (`_forward_layout`, `_backward_layout`), so that every load is whole lines. A step's product is
# too small to keep the GPU's memory busy with one program per block of units (94 to 188 programs
# for 1500 units, 6% of the warps resident under ncu), so each block's reduction is split among SPLIT
# programs; the last of them to finish adds the partial sums in a fixed order (the same result
# at every run) and computes the block's gates.
# The sizes below were the fastest of benchmarks/lm_kernel.py's sweep at Zaremba's 2 x 1500 on an
# H200 (results/lm/lm-kernel-*-h200.json), and within 6% of the fastest at AWD-LSTM's 3 x 1150.
BLOCK_ROWS, FORWARD_UNITS, BACKWARD_UNITS, BLOCK_K, WARPS, STAGES = 32, 16, 16, 128, 4, 3
FORWARD_SPLIT, BACKWARD_SPLIT = 4, 4


def available(pre: torch.Tensor) -> bool:
    return triton is not None and pre.device.type in ON


if triton is not None:
    @triton.jit
    def _tanh(x):
        return 2.0 * tl.sigmoid(2.0 * x) - 1.0

    @triton.jit
    def _reduced(acc, partial, count, NCOLS: tl.constexpr, BM: tl.constexpr, SPLIT: tl.constexpr):
        """Split K: this program's partial sums (BM, NCOLS) stored; the last program of the block
        gets (True, their sum in the order of the splits), the others (False, acc)."""
        if SPLIT == 1:
            return True, acc
        blocks = tl.num_programs(0) * tl.num_programs(1)
        block = tl.program_id(1) * tl.num_programs(0) + tl.program_id(0)
        tile = tl.arange(0, BM)[:, None] * NCOLS + tl.arange(0, NCOLS)[None, :]
        tl.store(partial + (tl.program_id(2) * blocks + block) * (BM * NCOLS) + tile, acc)
        last = tl.atomic_add(count + block, 1) == SPLIT - 1  # acq_rel: the others' stores are visible
        total = tl.zeros((BM, NCOLS), dtype=tl.float32)
        if last:
            for s in tl.static_range(SPLIT):
                total += tl.load(partial + (s * blocks + block) * (BM * NCOLS) + tile, volatile=True)
            tl.atomic_xchg(count + block, 0)  # ready for the next step
        return last, total

    @triton.jit
    def _forward_step(pre, s_pre, h_prev, s_hp, c_prev, s_cp, w, out, s_out, cell, gates, partial, count, B,
                      H: tl.constexpr, BM: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr, KS: tl.constexpr,
                      SPLIT: tl.constexpr, STAGES: tl.constexpr, PRECISION: tl.constexpr):
        """One time step for rows [BM block] x units [BH block]: gates = pre_t + h_(t-1) W^T, the
        product's K range split among SPLIT programs (KS each).

        w is `_forward_layout`'s (programs, H, BH, 4): this program's (H, 4 BH) slice, contiguous."""
        rows = tl.program_id(1) * BM + tl.arange(0, BM)
        units = tl.program_id(0) * BH + tl.arange(0, BH)
        row_ok, unit_ok = rows < B, units < H
        cols = tl.arange(0, 4 * BH)
        mine = w + tl.program_id(0) * (H * 4 * BH)
        acc = tl.zeros((BM, 4 * BH), dtype=tl.float32)
        for k0 in tl.range(0, KS, BK, num_stages=STAGES):
            ks = tl.program_id(2) * KS + k0 + tl.arange(0, BK)
            k_ok = ks < H
            h = tl.load(h_prev + rows[:, None] * s_hp + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            wt = tl.load(mine + ks[:, None] * (4 * BH) + cols[None, :], mask=k_ok[:, None], other=0.0)
            acc += tl.dot(h.to(w.dtype.element_ty), wt, input_precision=PRECISION)
        last, acc = _reduced(acc, partial, count, 4 * BH, BM, SPLIT)
        if last:
            # columns are (unit, gate) pairs: split the gate axis, (4) = (2, 2), gate = 2 x + y
            even, odd = tl.split(tl.reshape(acc, (BM, BH, 2, 2)))  # y = 0: gates 0, 2; y = 1: gates 1, 3
            acc_i, acc_g = tl.split(even)
            acc_f, acc_o = tl.split(odd)
            mask = row_ok[:, None] & unit_ok[None, :]
            p = pre + rows[:, None] * s_pre + units[None, :]
            i = tl.sigmoid(acc_i + tl.load(p, mask=mask, other=0.0).to(tl.float32))
            f = tl.sigmoid(acc_f + tl.load(p + H, mask=mask, other=0.0).to(tl.float32))
            g = _tanh(acc_g + tl.load(p + 2 * H, mask=mask, other=0.0).to(tl.float32))
            o = tl.sigmoid(acc_o + tl.load(p + 3 * H, mask=mask, other=0.0).to(tl.float32))
            c = f * tl.load(c_prev + rows[:, None] * s_cp + units[None, :], mask=mask, other=0.0) + i * g
            h_new = o * _tanh(c)
            here = rows[:, None] * H + units[None, :]
            tl.store(cell + here, c, mask=mask)
            tl.store(out + rows[:, None] * s_out + units[None, :], h_new.to(out.dtype.element_ty), mask=mask)
            q = gates + rows[:, None] * (4 * H) + units[None, :]
            tl.store(q, i, mask=mask)
            tl.store(q + H, f, mask=mask)
            tl.store(q + 2 * H, g, mask=mask)
            tl.store(q + 3 * H, o, mask=mask)

    @triton.jit
    def _backward_step(d_next, w, d_out, s_dout, gates, cell, c_prev, s_cp, d_cell, d_pre, partial, count, B,
                       H: tl.constexpr, HAS_NEXT: tl.constexpr, BM: tl.constexpr, BH: tl.constexpr,
                       BK: tl.constexpr, KS: tl.constexpr, SPLIT: tl.constexpr, STAGES: tl.constexpr,
                       PRECISION: tl.constexpr):
        """One step back: dh_t = d_out_t + dA_(t+1) W (block of units, K split as forward), then
        that block's dA_t.

        w is `_backward_layout`'s (programs, 4H, BH): this program's columns of W, contiguous.
        d_cell holds dc_t on entry and dc_(t-1) on exit, for this program's units only."""
        rows = tl.program_id(1) * BM + tl.arange(0, BM)
        units = tl.program_id(0) * BH + tl.arange(0, BH)
        row_ok, unit_ok = rows < B, units < H
        mask = row_ok[:, None] & unit_ok[None, :]
        acc = tl.zeros((BM, BH), dtype=tl.float32)
        last = True
        if HAS_NEXT:
            mine = w + tl.program_id(0) * (4 * H * BH)
            for k0 in tl.range(0, KS, BK, num_stages=STAGES):
                ks = tl.program_id(2) * KS + k0 + tl.arange(0, BK)
                k_ok = ks < 4 * H
                d = tl.load(d_next + rows[:, None] * (4 * H) + ks[None, :], mask=row_ok[:, None] & k_ok[None, :],
                            other=0.0)
                wt = tl.load(mine + ks[:, None] * BH + tl.arange(0, BH)[None, :], mask=k_ok[:, None], other=0.0)
                acc += tl.dot(d.to(w.dtype.element_ty), wt, input_precision=PRECISION)
            last, acc = _reduced(acc, partial, count, BH, BM, SPLIT)
        if last:
            dh = acc + tl.load(d_out + rows[:, None] * s_dout + units[None, :], mask=mask, other=0.0).to(tl.float32)
            q = gates + rows[:, None] * (4 * H) + units[None, :]
            i = tl.load(q, mask=mask, other=0.0)
            f = tl.load(q + H, mask=mask, other=0.0)
            g = tl.load(q + 2 * H, mask=mask, other=0.0)
            o = tl.load(q + 3 * H, mask=mask, other=0.0)
            here = rows[:, None] * H + units[None, :]
            tanh_c = _tanh(tl.load(cell + here, mask=mask, other=0.0))
            dc = tl.load(d_cell + here, mask=mask, other=0.0) + dh * o * (1.0 - tanh_c * tanh_c)
            c_before = tl.load(c_prev + rows[:, None] * s_cp + units[None, :], mask=mask, other=0.0)
            tl.store(d_cell + here, dc * f, mask=mask)
            r = d_pre + rows[:, None] * (4 * H) + units[None, :]
            kind = d_pre.dtype.element_ty
            tl.store(r, (dc * g * i * (1.0 - i)).to(kind), mask=mask)
            tl.store(r + H, (dc * c_before * f * (1.0 - f)).to(kind), mask=mask)
            tl.store(r + 2 * H, (dc * i * (1.0 - g * g)).to(kind), mask=mask)
            tl.store(r + 3 * H, (dh * tanh_c * o * (1.0 - o)).to(kind), mask=mask)


def _programs(hidden: int, units: int) -> int:
    return -(-hidden // units)


def _split(size: int, split: int) -> tuple[int, int]:
    """K of `size` among at most `split` programs: (programs, K per program in whole BLOCK_K chunks)."""
    per = -(-size // split)
    per = -(-per // BLOCK_K) * BLOCK_K
    return -(-size // per), per


def _precision(w: torch.Tensor) -> str:
    """float32 products as torch's cuDNN LSTM computes them: TF32 where cudnn.allow_tf32 (its
    default), exact otherwise; half-precision inputs are exact products either way."""
    return "tf32" if w.dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else "ieee"


def _scratch(split: int, grid: tuple[int, int], cols: int, like: torch.Tensor):
    """The partial sums and the per-block counters (zero) of a split reduction."""
    blocks = grid[0] * grid[1]
    partial = torch.empty(max(split, 1) * blocks * BLOCK_ROWS * cols, device=like.device, dtype=torch.float32)
    return partial, torch.zeros(blocks, device=like.device, dtype=torch.int32)


def _forward_layout(w: torch.Tensor, units: int) -> torch.Tensor:
    """W (4H, H) -> (programs, H, units, 4): [p, k, j, q] = W[q H + p units + j, k], zero past H."""
    hidden = w.size(1)
    padded = _programs(hidden, units) * units
    gates = torch.nn.functional.pad(w.view(4, hidden, hidden), (0, 0, 0, padded - hidden))  # (4, P units, H)
    return gates.view(4, -1, units, hidden).permute(1, 3, 2, 0).contiguous()


def _backward_layout(w: torch.Tensor, units: int) -> torch.Tensor:
    """W (4H, H) -> (programs, 4H, units): [p, r, j] = W[r, p units + j], zero past H."""
    hidden = w.size(1)
    padded = _programs(hidden, units) * units
    return torch.nn.functional.pad(w, (0, padded - hidden)).view(4 * hidden, -1, units).transpose(0, 1).contiguous()


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, w_hh, h0, c0):
        rows, steps, four_h = pre.shape
        hidden = four_h // 4
        pre, w = pre.contiguous(), w_hh.to(pre.dtype)  # (the kernels take unit strides along the last dim)
        laid = _forward_layout(w, FORWARD_UNITS)
        h0, c0 = h0.contiguous(), c0.float().contiguous()
        out = pre.new_empty(rows, steps, hidden)
        cells = torch.empty(steps, rows, hidden, device=pre.device, dtype=torch.float32)
        gates = torch.empty(steps, rows, four_h, device=pre.device, dtype=torch.float32)
        grid = (_programs(hidden, FORWARD_UNITS), -(-rows // BLOCK_ROWS))
        split, per = _split(hidden, FORWARD_SPLIT)
        partial, count = _scratch(split, grid, 4 * FORWARD_UNITS, pre)
        precision = _precision(w)
        for t in range(steps):
            h_prev = h0 if t == 0 else out[:, t - 1]
            c_prev = c0 if t == 0 else cells[t - 1]
            _forward_step[grid + (split,)](
                pre[:, t], pre.stride(0), h_prev, h_prev.stride(0), c_prev, c_prev.stride(0), laid, out[:, t],
                out.stride(0), cells[t], gates[t], partial, count, rows, H=hidden, BM=BLOCK_ROWS, BH=FORWARD_UNITS,
                BK=BLOCK_K, KS=per, SPLIT=split, STAGES=STAGES, PRECISION=precision, num_warps=WARPS)
        ctx.save_for_backward(w, h0, c0, out, cells, gates)
        ctx.w_dtype = w_hh.dtype
        return out, out[:, -1].to(h0.dtype, copy=True), cells[-1].clone()

    @staticmethod
    def backward(ctx, d_out, d_hn, d_cn):
        w, h0, c0, out, cells, gates = ctx.saved_tensors
        rows, steps, hidden = out.shape
        if d_out is None:
            d_out = torch.zeros_like(out)
        elif d_hn is not None:  # written to below: a copy, laid out as the kernels read it
            d_out = d_out.clone(memory_format=torch.contiguous_format)
        else:
            d_out = d_out.contiguous()
        if d_hn is not None:  # the final state's gradient joins the last output's
            d_out[:, -1] += d_hn.to(d_out.dtype)
        d_cell = torch.zeros_like(c0) if d_cn is None else d_cn.float().contiguous().clone()
        d_pre = torch.empty(steps, rows, 4 * hidden, device=out.device, dtype=out.dtype)
        laid = _backward_layout(w, BACKWARD_UNITS)
        grid = (_programs(hidden, BACKWARD_UNITS), -(-rows // BLOCK_ROWS))
        split, per = _split(4 * hidden, BACKWARD_SPLIT)
        partial, count = _scratch(split, grid, BACKWARD_UNITS, out)
        precision = _precision(w)
        for t in reversed(range(steps)):
            c_prev = c0 if t == 0 else cells[t - 1]
            has_next = t + 1 < steps  # the last step has no product: one program per block
            d_next = d_pre[t + 1] if has_next else d_pre[t]  # (not read without a next step)
            _backward_step[grid + (split if has_next else 1,)](
                d_next, laid, d_out[:, t], d_out.stride(0), gates[t], cells[t], c_prev, c_prev.stride(0), d_cell,
                d_pre[t], partial, count, rows, H=hidden, HAS_NEXT=has_next, BM=BLOCK_ROWS, BH=BACKWARD_UNITS,
                BK=BLOCK_K, KS=per, SPLIT=split if has_next else 1, STAGES=STAGES, PRECISION=precision,
                num_warps=WARPS)
        h_before = torch.cat([h0.to(out.dtype).unsqueeze(0), out[:, :-1].transpose(0, 1)])  # (T, B, H)
        d_w = (d_pre.flatten(0, 1).t() @ h_before.flatten(0, 1)).to(ctx.w_dtype)
        d_h0 = (d_pre[0] @ w).to(h0.dtype)
        return d_pre.transpose(0, 1), d_w, d_h0, d_cell


def recurrence(pre: torch.Tensor, w_hh: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
    """pre (B, T, 4H), w_hh (4H, H), h0 and c0 (B, H) -> out (B, T, H), h_n, c_n (B, H)."""
    return _Recurrence.apply(pre, w_hh, h0, c0)
