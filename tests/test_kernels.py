"""nmt/kernels.py: the Triton kernels against the torch operators they stand for.

On the CPU they run through Triton's interpreter, in a process of their own (TRITON_INTERPRET
must be set before Triton is imported); on CUDA as compiled kernels. Without Triton, or on a
device the kernels do not run on, the functions are torch's operators themselves.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nmt import kernels

ROOT = Path(__file__).resolve().parents[1]
cuda = pytest.mark.skipif(not torch.cuda.is_available() or kernels.triton is None, reason="needs CUDA and Triton")


def awkward_rows(rows: int, vocab: int, dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    """Logits with what a search step holds: -inf (forbidden tokens), many equal values, a large
    value, and rows that are a slice of a wider tensor (a row stride larger than V)."""
    g = torch.Generator().manual_seed(seed)
    wide = (torch.randn(rows, vocab + 3, generator=g) * 4).round()  # rounded: ties within windows
    wide[0, 1:vocab:3] = -math.inf
    if rows > 1:
        wide[1, 0] = 60000.0 if dtype == torch.float16 else 1e4
    if rows > 2:
        wide[2, :vocab - 1] = -math.inf  # every token forbidden but the last
    return wide.to(dtype=dtype, device=device)[:, :vocab]


def check(device: str) -> None:
    """Every case on `device`; raises AssertionError naming the case that differs."""
    assert kernels.triton is not None and device in kernels.ON
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        for rows, vocab in ((1, 1), (3, 7), (4, 300), (3, 2048), (5, 2049)):
            x = awkward_rows(rows, vocab, dtype, device, seed=vocab)
            assert kernels.available(x) and x.stride(0) > vocab
            got = kernels.log_softmax(x)
            want = F.log_softmax(x.float(), dim=-1)
            assert got.dtype == torch.float32 and got.shape == want.shape
            torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-6, msg=f"log_softmax {dtype} {rows}x{vocab}")
            for w in (1, 3, 32, 40, 64):
                if w > vocab:
                    continue
                values, where = kernels.window_maxima(x, w)
                want_values, want_where = F.max_pool1d(x.float().unsqueeze(1), w, w, ceil_mode=True,
                                                       return_indices=True)
                case = f"window_maxima {dtype} {rows}x{vocab} w={w}"
                assert values.dtype == dtype and where.dtype == torch.long, case
                assert torch.equal(values.float(), want_values.squeeze(1)), case
                assert torch.equal(where, want_where.squeeze(1)), case  # the first of equal maxima


def test_kernels_equal_torch_under_tritons_interpreter():
    pytest.importorskip("triton")
    code = ("import sys; from nmt import kernels; kernels.ON = ('cuda', 'cpu'); "
            "sys.path.insert(0, 'tests'); import test_kernels; test_kernels.check('cpu')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TRITON_INTERPRET": "1"})
    assert done.returncode == 0, done.stderr[-3000:]


@cuda
def test_kernels_equal_torch_on_cuda():
    check("cuda")


def test_without_the_kernels_the_functions_are_torchs(monkeypatch):
    monkeypatch.setattr(kernels, "ON", ())
    x = awkward_rows(4, 300, torch.float32, "cpu", seed=0)
    assert not kernels.available(x)
    assert torch.equal(kernels.log_softmax(x), F.log_softmax(x, dim=-1))
    values, where = kernels.window_maxima(x, 40)
    want_values, want_where = F.max_pool1d(x.unsqueeze(1), 40, 40, ceil_mode=True, return_indices=True)
    assert torch.equal(values, want_values.squeeze(1)) and torch.equal(where, want_where.squeeze(1))
