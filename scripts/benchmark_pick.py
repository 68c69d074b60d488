"""The search's pick, torch's operators against nmt/decode/topk.py's pruned forms.

Each case is one call on random scores, captured in a CUDA graph and replayed (the search replays
its steps so): microseconds per call, over --steps replays, the graph's launch included. Cases:
  extensions  beam search's pick for 128 sentences x K rows of V tokens, as the search makes it
              under autocast (float32 log-probabilities, bf16 logits to rank in): beam.best_extensions
              unpruned (a top-k per row, then per sentence) against topk.pruned_extensions, at
              the Multi30k model's 6,000 and the paper model's 32,000 pieces, K = 1, 5, 12, and
              smaller vocabularies around topk.MIN_VOCAB
  argmax      greedy search's pick, 128 rows x V, V from 1,000 to 32,000: torch.argmax against
              topk.pruned_argmax
Each pruned result is checked against the unpruned one (the same scores; for argmax the same positions).

    python scripts/benchmark_pick.py --out benchmarks/results/decode/pick-h200.json

`--tiny` runs a few small cases on the CPU (eagerly), a smoke test for tests/test_benchmark.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.decode import topk  # noqa: E402
from nmt.decode.beam import best_extensions  # noqa: E402
from nmt.files import write_json  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from scripts.benchmark_train import captured, timed  # noqa: E402

EXTENSION_CASES = [(128, beam, vocab) for vocab in (6000, 32000) for beam in (1, 5, 12)]
EXTENSION_CASES += [(128, 5, vocab) for vocab in (1000, 2000, 4000)]
ARGMAX_VOCABS = (1000, 2000, 4000, 6000, 8000, 12000, 16000, 24000, 32000)
TINY_EXTENSIONS, TINY_ARGMAX = [(4, 2, 600), (8, 5, 1200)], (1100,)


def per_call(fn, device, steps: int) -> float:
    """Microseconds per call of fn: its CUDA graph's replay on CUDA, the call itself on the CPU."""
    return 1e6 * timed(captured(fn) if device.type == "cuda" else fn, device, steps)


def unpruned(log_probs, scores, ranking):
    """best_extensions as it runs off CUDA or below topk.MIN_VOCAB."""
    kept = topk.PRUNED_ON
    topk.PRUNED_ON = ()
    try:
        return best_extensions(log_probs, scores, ranking)
    finally:
        topk.PRUNED_ON = kept


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--windows", default="0", help="window widths to time the pruned pick at, comma-separated "
                                                        "(0: the toolkit's, topk.window_for)")
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
        print(f"{record['op']:6} {record['rows']:5} x {record['vocab']:6} k {record.get('k', 1):3} "
              f"w {record['window']:3}: torch "
              f"{record['torch_us']:7.1f} us, pruned {record['pruned_us']:7.1f} us ({record['speedup']:.2f}x); "
              f"the toolkit prunes: {record['toolkit_prunes']}")
        if args.out:
            write_json(args.out, records)

    for sentences, k, vocab in TINY_EXTENSIONS if args.tiny else EXTENSION_CASES:
        ranking = (3 * torch.randn(sentences, k, vocab, device=device, generator=g)).to(torch.bfloat16)
        log_probs = torch.log_softmax(ranking.float(), -1)
        scores = -5 * torch.rand(sentences, k, device=device, generator=g)
        width = min(2 * k, k * vocab)
        theirs = per_call(lambda: unpruned(log_probs, scores, ranking), device, args.steps)
        for window in map(int, args.windows.split(",")):
            if not torch.equal(topk.pruned_extensions(log_probs, scores, width, ranking, window)[0],
                               unpruned(log_probs, scores, ranking)[0]):
                raise SystemExit(f"the pruned pick differs from the unpruned one at {sentences} x {k} x {vocab}")
            mine = per_call(lambda: topk.pruned_extensions(log_probs, scores, width, ranking, window), device,
                            args.steps)
            add({"op": "extensions", "rows": sentences * k, "beam": k, "vocab": vocab, "k": width,
                 "window": window or topk.window_for(vocab), "toolkit_window": window == 0, "torch_us": theirs,
                 "pruned_us": mine, "speedup": theirs / mine, "toolkit_prunes": topk.prunes(log_probs)})
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
