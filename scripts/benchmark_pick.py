"""The search's per-row pick, torch's operators against nmt/decode/topk.py's pruned forms.

Each case is one call on random bf16 logits (the dtype the search ranks in under autocast),
captured in a CUDA graph and replayed (the search replays its steps so): microseconds per call,
the median over --steps replays, the graph's launch included. Cases:
  topk     rows x V, k: the search's shapes (128 sentences x beam rows, k = 2 x beam) at the
           Multi30k model's 6,000 and the paper model's 32,000 pieces, and V / k ratios around
           topk.MIN_VOCAB_PER_K; torch.topk against pruned_topk at topk.window_for(V)
  argmax   128 rows x V, V from 1,000 to 32,000: torch.argmax against pruned_argmax
Each pruned result is checked against torch's (the same values; for argmax the same positions).

    python scripts/benchmark_pick.py --out benchmarks/results/decode/pick-h200.json

`--tiny` runs a few small cases on the CPU (eagerly), a smoke test for tests/test_benchmark.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.decode import topk  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from scripts.benchmark_train import captured, timed  # noqa: E402

TOPK_CASES = [(rows, vocab, 2 * beam) for vocab in (6000, 32000) for beam, rows in ((1, 128), (5, 640), (12, 1536))]
TOPK_CASES += [(1536, vocab, 24) for vocab in (8000, 9600, 12000, 16000)] + [(640, vocab, 10) for vocab in (3000, 4000)]
ARGMAX_VOCABS = (1000, 2000, 4000, 6000, 8000, 12000, 16000, 24000, 32000)
TINY_TOPK, TINY_ARGMAX = [(8, 600, 4), (16, 1200, 10)], (1100,)


def per_call(fn, device, steps: int) -> float:
    """Microseconds per call of fn: its CUDA graph's replay on CUDA, the call itself on the CPU."""
    return 1e6 * timed(captured(fn) if device.type == "cuda" else fn, device, steps)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--tiny", action="store_true", help="a few small cases (a CPU smoke test)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    header, records = provenance(), []
    g = torch.Generator(device=device).manual_seed(0)

    def logits(rows: int, vocab: int) -> torch.Tensor:
        return torch.randn(rows, vocab, device=device, generator=g).to(torch.bfloat16)

    def add(record: dict) -> None:
        records.append({**record, **header})
        print(f"{record['op']:6} {record['rows']:5} x {record['vocab']:6} k {record.get('k', 1):3}: torch "
              f"{record['torch_us']:7.1f} us, pruned {record['pruned_us']:7.1f} us ({record['speedup']:.2f}x); "
              f"the toolkit prunes: {record['toolkit_prunes']}")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(args.out, json.dumps(records, indent=2) + "\n")

    for rows, vocab, k in TINY_TOPK if args.tiny else TOPK_CASES:
        x = logits(rows, vocab)
        if not torch.equal(topk.pruned_topk(x, k)[0], x.topk(k).values):
            raise SystemExit(f"pruned_topk differs from torch.topk at {rows} x {vocab}, k {k}")
        mine, theirs = per_call(lambda: topk.pruned_topk(x, k), device, args.steps), \
            per_call(lambda: x.topk(k), device, args.steps)
        add({"op": "topk", "rows": rows, "vocab": vocab, "k": k, "window": topk.window_for(vocab),
             "torch_us": theirs, "pruned_us": mine, "speedup": theirs / mine,
             "toolkit_prunes": topk.prunes_topk(x, k)})
    for vocab in TINY_ARGMAX if args.tiny else ARGMAX_VOCABS:
        x = logits(128, vocab)
        if not torch.equal(topk.pruned_argmax(x), x.argmax(-1, keepdim=True)):
            raise SystemExit(f"pruned_argmax differs from torch.argmax at 128 x {vocab}")
        mine, theirs = per_call(lambda: topk.pruned_argmax(x), device, args.steps), \
            per_call(lambda: x.argmax(-1, keepdim=True), device, args.steps)
        add({"op": "argmax", "rows": 128, "vocab": vocab, "window": 32, "torch_us": theirs, "pruned_us": mine,
             "speedup": theirs / mine, "toolkit_prunes": topk.prunes_argmax(x)})
    return records


if __name__ == "__main__":
    main()
