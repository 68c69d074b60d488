"""The output layer and its cross-entropy on the CPU: torch's whole-logits way against the
toolkit's row chunks (nmt/model/output_loss.py), side by side in one process.

For each shape (rows = sentences x target tokens, hidden width, vocabulary) and thread count:
the seconds of one forward and backward pass of `F.cross_entropy(F.linear(h, W, b), y)` and of
`output_cross_entropy(h, W, b, y)`, the median of several calls after one of each not counted (a
run's first step pays more: scripts/benchmark_train_start.py measures that), alternated so that a
slow spell of the machine hits both; the
largest difference of their losses and gradients; the ratio plain / chunked.

    python scripts/benchmark_output_loss.py --out benchmarks/results/output-loss-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.files import write_atomically  # noqa: E402
from nmt.model.output_loss import output_cross_entropy  # noqa: E402
from nmt.provenance import provenance  # noqa: E402

PAD = 0
# (rows, hidden, vocabulary): the train-start benchmark's first batch (128 x 81 tokens, a 64-wide
# model, 8,000 words); a 2 x 256 model's batch of 64 x 30; the paper's 1000-wide output at 32,000;
# then logits of one chunk or less, where the toolkit keeps torch's path (output_loss.applies):
# the quickstart's batch (64 x 20 tokens, 60 words), and 1,000 words.
SHAPES = [(128 * 81, 64, 8000), (64 * 30, 256, 8000), (64 * 30, 1000, 32000), (64 * 20, 256, 60),
          (64 * 20, 256, 1000)]
TIMED_LOGITS = 1 << 24  # a small shape's pass is timed over enough calls to make this many logits


def _plain(h, w, b, y):
    return F.cross_entropy(F.linear(h, w, b), y, ignore_index=PAD, reduction="sum")


def _chunked(h, w, b, y):
    return output_cross_entropy(h, w, b, y, ignore_index=PAD)


def _timed(loss_of, h, w, b, y, calls: int):
    """Seconds of one forward and backward pass, the mean of `calls` passes."""
    inputs = [h, w, b]
    started = time.perf_counter()
    for _ in range(calls):
        loss = loss_of(h, w, b, y)
        grads = torch.autograd.grad(loss, inputs)
    return (time.perf_counter() - started) / calls, loss.detach(), grads


def measure(rows: int, hidden: int, vocab: int, repeats: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(rows, hidden, generator=generator).requires_grad_()
    w = (torch.rand(vocab, hidden, generator=generator) * 0.16 - 0.08).requires_grad_()
    b = (torch.rand(vocab, generator=generator) * 0.16 - 0.08).requires_grad_()
    y = torch.randint(1, vocab, (rows,), generator=generator)
    y[torch.rand(rows, generator=generator) < 0.1] = PAD  # about the bucketed batches' padding
    calls = max(1, TIMED_LOGITS // (rows * vocab))
    seconds = {"plain": [], "chunked": []}
    results = {}
    for repeat in range(repeats + 1):
        order = (("plain", _plain), ("chunked", _chunked)) if repeat % 2 == 0 else (("chunked", _chunked), ("plain", _plain))
        for name, loss_of in order:
            took, loss, grads = _timed(loss_of, h, w, b, y, calls)
            seconds[name].append(took)
            results[name] = (loss, grads)
    (plain_loss, plain_grads), (chunked_loss, chunked_grads) = results["plain"], results["chunked"]
    out = {"rows": rows, "hidden": hidden, "vocab": vocab, "real_rows": int((y != PAD).sum()),
           "calls_per_timing": calls}
    for name in seconds:
        out[name] = {"median_s": round(statistics.median(seconds[name][1:]), 6),
                     "runs_s": [round(s, 6) for s in seconds[name][1:]]}
    out["ratio_median"] = round(out["plain"]["median_s"] / out["chunked"]["median_s"], 2)
    out["loss_difference"] = abs(float(plain_loss - chunked_loss))
    out["loss_relative_difference"] = out["loss_difference"] / abs(float(plain_loss))
    out["grad_max_difference"] = max(float((p - c).abs().max()) for p, c in zip(plain_grads, chunked_grads))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per way, after one not counted")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    record = {"kind": "output-loss", **provenance(), "torch": torch.__version__, "load_before": os.getloadavg(),
              "cases": []}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for rows, hidden, vocab in SHAPES:
            case = {"threads": threads, **measure(rows, hidden, vocab, args.repeats)}
            record["cases"].append(case)
            print(f"threads {threads}, {rows} x {hidden} -> {vocab}: plain {case['plain']['median_s']} s, chunked "
                  f"{case['chunked']['median_s']} s ({case['ratio_median']}x)",
                  flush=True)
    record["load_after"] = os.getloadavg()
    write_atomically(args.out, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
