"""What normalising one search step's logits costs: the float32 log-softmax the search computes
(nmt/model/seq2seq.py's decode_scores) against computing only each row's log-sum-exp, which is
all a pick needs besides the few log-probabilities it keeps (a measurement for a later change;
the search does not use these forms).

Each case is one call on random logits of the search's shapes (128 sentences x beam rows), in
float16 (a search's untied output layer, Seq2Seq.half_output) and bf16 (a tied one), captured in
a CUDA graph and replayed: microseconds per call, and each log-sum-exp's largest error against
float64. Forms:
  log_softmax   F.log_softmax(logits, dim=-1, dtype=torch.float32): what decode_scores returns
  lse_float32   torch.logsumexp(logits.float(), -1): the upcast copy, then the reduction
  lse_half      max, exp(logits - max) in the logits' dtype, its sum accumulated in float32

    python scripts/benchmark_normalizer.py --out benchmarks/results/decode/normalizer-h200.json

`--tiny` runs small cases on the CPU (eagerly), a smoke test for tests/test_benchmark.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.files import write_json  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from scripts.benchmark_pick import per_call  # noqa: E402

CASES = [(rows, vocab) for vocab in (6000, 32000) for rows in (128, 640, 1536)]
TINY = [(8, 600)]


def lse_half(x: torch.Tensor) -> torch.Tensor:
    top = x.amax(-1, keepdim=True)
    return (x - top).exp_().sum(-1, dtype=torch.float32).log_() + top.squeeze(-1).float()


FORMS = {"log_softmax": lambda x: F.log_softmax(x, dim=-1, dtype=torch.float32),
         "lse_float32": lambda x: torch.logsumexp(x.float(), -1), "lse_half": lse_half}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--tiny", action="store_true", help="small cases (a CPU smoke test)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    header, records = provenance(), []
    g = torch.Generator(device=device).manual_seed(0)
    for rows, vocab in TINY if args.tiny else CASES:
        for dtype in (torch.float16, torch.bfloat16):
            x = (3 * torch.randn(rows, vocab, device=device, generator=g)).to(dtype)
            exact = torch.logsumexp(x.double(), -1)
            record = {"rows": rows, "vocab": vocab, "dtype": str(dtype).removeprefix("torch.")}
            for name, form in FORMS.items():
                record[f"{name}_us"] = per_call(lambda: form(x), device, args.steps)
                if name != "log_softmax":
                    record[f"{name}_max_error"] = float((form(x).double() - exact).abs().max())
            records.append({**record, **header})
            print(f"{rows:5} x {vocab:6} {record['dtype']:8} " + "  ".join(
                f"{name} {record[name + '_us']:7.1f} us" for name in FORMS)
                + f"  errors {record['lse_float32_max_error']:.1e} / {record['lse_half_max_error']:.1e}")
            if args.out:
                write_json(args.out, records)
    return records


if __name__ == "__main__":
    main()
