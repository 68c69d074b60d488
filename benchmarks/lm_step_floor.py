"""How fast can one training step of Zaremba's large PTB recipe be on this GPU? The floor under
issue 15's "3x the bare script" goal, measured in one process.

The recipe's step (batch 20, 35 steps, 2 x 1500 LSTM, 10,000 words, dropout 0.65, SGD, norm-10
clipping) is timed several ways, each over the same random windows:

  bare, eager, fp32      the bare script's own step (benchmarks/lm_bare.py's model and loop body)
  bare, eager, bf16      the same under bf16 autocast (what the toolkit trains with)
  bare, graph, bf16      the whole step (forward, backward, clipping, SGD) as one CUDA graph
  lstm, graph, bf16/fp32 cuDNN's LSTM alone, forward and backward, as one CUDA graph

and, for the eager bf16 step, the GPU's kernel time by kind from torch.profiler (the RNN's own
kernels, matrix products, the rest). A step that must be 3x faster than the bare one has a third
of its time; the LSTM's own forward and backward cannot be shorter than its graph's replay.

    python3 benchmarks/lm_step_floor.py --out lm-step-floor.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.lm_bare import Model  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from scripts.benchmark_train import captured  # noqa: E402  the one graph capture of the benchmarks

ROWS, STEPS, VOCAB = 20, 35, 10000


def time_ms(run, repeats: int) -> float:
    """Median over 5 rounds of the mean milliseconds of `repeats` calls, timed with CUDA events."""
    rounds = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            run()
        end.record()
        end.synchronize()
        rounds.append(start.elapsed_time(end) / repeats)
    return sorted(rounds)[2]


def bare_step(model, optimizer, x, y, state, bf16: bool):
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(x, state)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum") / ROWS
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0, foreach=True)
        optimizer.step()
    return step


def lstm_step(lstm, inputs, bf16: bool):
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out, _ = lstm(inputs)
        out.float().sum().backward()
    return step


def kernel_kinds(step, repeats: int = 20) -> dict:
    """The GPU's kernel time per step by kind, from torch.profiler, for an eager step."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            step()
        torch.cuda.synchronize()
    kinds = {"rnn": 0.0, "gemm": 0.0, "other": 0.0}
    names = {}
    for event in prof.key_averages():
        total = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)
        if not total or event.key.startswith(("cudaLaunch", "cudaMemcpy", "cudaStream")):
            continue
        name = event.key.lower()
        kind = ("rnn" if any(k in name for k in ("rnn", "lstm", "persist", "elemwise_rnn")) else
                "gemm" if any(k in name for k in ("gemm", "sm90", "cutlass", "xmma", "ampere", "nvjet")) else "other")
        kinds[kind] += total / 1000 / repeats
        names[event.key[:120]] = round(total / 1000 / repeats, 4)
    top = dict(sorted(names.items(), key=lambda kv: -kv[1])[:25])
    return {"ms_per_step": {k: round(v, 4) for k, v in kinds.items()}, "top_kernels_ms_per_step": top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(1)
    device = torch.device("cuda")
    x = torch.randint(0, VOCAB, (ROWS, STEPS), device=device)
    y = torch.randint(0, VOCAB, (ROWS, STEPS), device=device)
    state = tuple(torch.zeros(2, ROWS, 1500, device=device) for _ in range(2))
    record = {**provenance(), "kind": "lm-step-floor", "gpu": torch.cuda.get_device_name(),
              "shape": {"rows": ROWS, "steps": STEPS, "layers": 2, "hidden": 1500, "vocab": VOCAB},
              "cudnn": torch.backends.cudnn.version(), "ms_per_step": {}}

    model = Model(VOCAB).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for name, bf16 in (("bare, eager, fp32", False), ("bare, eager, bf16", True)):
        step = bare_step(model, optimizer, x, y, state, bf16)
        step()
        record["ms_per_step"][name] = round(time_ms(step, args.repeats), 4)
        print(name, record["ms_per_step"][name], flush=True)
    record["eager_bf16_kernels"] = kernel_kinds(bare_step(model, optimizer, x, y, state, True))
    print(json.dumps(record["eager_bf16_kernels"]["ms_per_step"]), flush=True)
    replay = captured(bare_step(model, optimizer, x, y, state, True))
    record["ms_per_step"]["bare, graph, bf16"] = round(time_ms(replay, args.repeats), 4)
    print("bare, graph, bf16", record["ms_per_step"]["bare, graph, bf16"], flush=True)

    lstm = torch.nn.LSTM(1500, 1500, 2, dropout=0.65, batch_first=True).to(device)
    inputs = torch.randn(ROWS, STEPS, 1500, device=device, requires_grad=True)
    for name, bf16 in (("lstm, graph, bf16", True), ("lstm, graph, fp32", False)):
        replay = captured(lstm_step(lstm, inputs, bf16))
        record["ms_per_step"][name] = round(time_ms(replay, args.repeats), 4)
        print(name, record["ms_per_step"][name], flush=True)
    record["lstm_only_kernels_bf16"] = kernel_kinds(lstm_step(lstm, inputs, True))

    bare = record["ms_per_step"]["bare, eager, fp32"]
    record["three_times_bare_needs_ms"] = round(bare / 3, 4)
    record["tokens_per_second"] = {k: round(ROWS * STEPS / (v / 1000)) for k, v in record["ms_per_step"].items()}
    write_atomically(args.out, json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("ms_per_step", "three_times_bare_needs_ms", "tokens_per_second")}))


if __name__ == "__main__":
    main()
