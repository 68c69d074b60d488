"""The Triton LSTM recurrence (nmt/model/lstm_kernel.py) against cuDNN's, in one process on a GPU.

Four things, each written into one JSON record:

  check      the same weights and windows through nn.LSTM and through the kernels (float32 and
             bf16 autocast): the largest differences of the outputs and of every gradient
  lstm       an LSTM stack's forward and backward alone, one CUDA graph each, cuDNN against the
             kernels (the kernels at several tile sizes): Zaremba's 2 x 1500 at 20 x 35 windows,
             AWD-LSTM's 3 x 1150 at 20 x 70, the paper's 4 x 1000 at 128 x 30
  step       Zaremba's whole training step (benchmarks/lm_bare.py's step, and the toolkit's
             LanguageModel with either kernel), each as one CUDA graph under bf16 autocast, and
             the bare script's eager float32 step: the reference of issue 15's 3x
  awd        the toolkit's AWD-LSTM step with weight drop: cuDNN eagerly (it cannot be a graph),
             the kernels as a graph

    python3 benchmarks/lm_kernel.py --out lm-kernel.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.lm_bare import Model  # noqa: E402
from benchmarks.lm_step_floor import bare_step, time_ms  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.model import lstm_kernel  # noqa: E402
from nmt.model.lm import LanguageModel  # noqa: E402
from nmt.model.rnn import StackedRNN  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from scripts.benchmark_train import captured  # noqa: E402

# (rows, units forward, units backward, k chunk, warps, stages, split forward, split backward):
# lstm_kernel's tile sizes
TILE_NAMES = ("BLOCK_ROWS", "FORWARD_UNITS", "BACKWARD_UNITS", "BLOCK_K", "WARPS", "STAGES", "FORWARD_SPLIT",
              "BACKWARD_SPLIT")
TILES = [(32, 8, 16, 128, 4, 3, 2, 4), (32, 8, 16, 128, 4, 3, 1, 1), (32, 8, 16, 128, 4, 3, 3, 6),
         (32, 8, 16, 128, 4, 3, 4, 8), (32, 8, 16, 64, 4, 3, 2, 4), (32, 8, 16, 64, 4, 3, 4, 8),
         (32, 16, 16, 128, 4, 3, 4, 4), (32, 4, 16, 128, 4, 3, 2, 4), (32, 8, 32, 128, 4, 3, 2, 2),
         (32, 8, 16, 128, 2, 3, 2, 4), (32, 8, 16, 256, 8, 3, 2, 4), (64, 8, 16, 128, 4, 3, 2, 4)]
DEFAULT = tuple(getattr(lstm_kernel, name) for name in TILE_NAMES)


def use_tile(tile) -> None:
    for name, value in zip(TILE_NAMES, tile):
        setattr(lstm_kernel, name, value)


def stack(kernel: str, size_in: int, hidden: int, layers: int, dropout: float, weight_drop: float = 0.0):
    return StackedRNN(cell="lstm", input_size=size_in, hidden=hidden, layers=layers, dropout=dropout,
                      weight_drop=weight_drop, kernel=kernel)


def check(device) -> dict:
    """nn.LSTM's outputs and gradients against the kernels', on one set of weights."""
    torch.manual_seed(0)
    cudnn = stack("cudnn", 1500, 1500, 2, 0.0).to(device)
    ours = stack("triton", 1500, 1500, 2, 0.0).to(device)
    ours.load_state_dict(cudnn.state_dict())
    x = torch.randn(20, 35, 1500, device=device)
    state = tuple(torch.randn(2, 20, 1500, device=device) * 0.5 for _ in range(2))
    result = {}
    for name, bf16 in (("float32", False), ("bf16", True)):
        grads = []
        for model in (cudnn, ours):
            model.zero_grad()
            xi = x.clone().requires_grad_()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                out, (h, c) = model(xi, state=state)
            (out.float().sin().sum() + h.float().sum() + c.float().cos().sum()).backward()
            grads.append([out.float(), h.float(), c.float(), xi.grad] + [p.grad for p in model.parameters()])
        assert ours.uses_kernel(x) and not cudnn.uses_kernel(x)
        result[name] = [{"max_abs_diff": round((a - b).abs().max().item(), 6),
                         "max_abs": round(a.abs().max().item(), 6)} for a, b in zip(*grads)]
        print(name, json.dumps(result[name]), flush=True)
    result["order"] = "out, h_n, c_n, d_x, then each parameter's gradient"
    return result


def lstm_alone(device, repeats: int, best_tiles: dict) -> dict:
    """Forward and backward (and forward alone) of each shape's stack, cuDNN and every tile; each
    shape's fastest tile goes into `best_tiles`."""
    shapes = {"zaremba 2 x 1500, 20 x 35": (1500, 1500, 2, 20, 35), "awd 3 x 1150, 20 x 70": (400, 1150, 3, 20, 70),
              "paper 4 x 1000, 128 x 30": (1000, 1000, 4, 128, 30)}
    result = {}
    for label, (size_in, hidden, layers, rows, steps) in shapes.items():
        torch.manual_seed(0)
        x = torch.randn(rows, steps, size_in, device=device, requires_grad=True)
        row, forward = {}, {}
        for kernel in ("cudnn", "triton"):
            model = stack(kernel, size_in, hidden, layers, 0.3).to(device)

            def step(model=model, backward=True):
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out, _ = model(x)
                if backward:
                    out.float().sum().backward()
            for tile in (TILES if kernel == "triton" else [None]):
                if tile is not None:
                    use_tile(tile)
                name = kernel if tile is None else f"triton {tile}"
                row[name] = round(time_ms(captured(step), repeats), 4)
                forward[name] = round(time_ms(captured(lambda: step(backward=False)), repeats), 4)
                print(label, name, row[name], "forward", forward[name], flush=True)
        best = min(TILES, key=lambda tile: row[f"triton {tile}"])
        result[label] = {"forward_and_backward": row, "forward": forward, "best_tile": f"triton {best}"}
        best_tiles[label] = best
    use_tile(DEFAULT)
    return result


def lm_step(model, optimizer, batch, clip: float, rows: int):
    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(batch) / rows
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
        optimizer.step()
    return step


def zaremba_steps(device, repeats: int) -> dict:
    torch.manual_seed(1)
    vocab, rows, steps = 10000, 20, 35
    x = torch.randint(3, vocab, (rows, steps), device=device)
    y = torch.randint(3, vocab, (rows, steps), device=device)
    state = tuple(torch.zeros(2, rows, 1500, device=device) for _ in range(2))
    result = {}
    bare = Model(vocab).to(device)
    sgd = torch.optim.SGD(bare.parameters(), lr=1.0)
    step = bare_step(bare, sgd, x, y, state, False)
    step()
    result["bare, eager, fp32"] = round(time_ms(step, repeats), 4)
    result["bare, graph, bf16"] = round(time_ms(captured(bare_step(bare, sgd, x, y, state, True)), repeats), 4)
    batch = SimpleNamespace(tokens_in=x, tokens_out=y, first=torch.tensor(0.0, device=device))
    for kernel in ("cudnn", "triton"):
        model = LanguageModel(vocab_size=vocab, embed=1500, hidden=1500, layers=2, dropout=0.65, init_range=0.04,
                              lstm_kernel=kernel).to(device).train()
        replay = captured(lm_step(model, torch.optim.SGD(model.parameters(), lr=1.0), batch, 10.0, rows))
        result[f"toolkit, graph, bf16, {kernel}"] = round(time_ms(replay, repeats), 4)
    for name, ms in result.items():
        print("zaremba step", name, ms, flush=True)
    return result


def awd_steps(device, repeats: int) -> dict:
    torch.manual_seed(2)
    vocab, rows, steps = 10000, 20, 70
    x = torch.randint(3, vocab, (rows, steps), device=device)
    batch = SimpleNamespace(tokens_in=x, tokens_out=x.roll(-1, 1), first=torch.tensor(0.0, device=device))
    result = {}
    for kernel, graph in (("cudnn", False), ("triton", False), ("triton", True)):
        model = LanguageModel(vocab_size=vocab, embed=400, hidden=1150, layers=3, dropout=0.4, embed_dropout=0.4,
                              word_dropout=0.1, variational_dropout=True, weight_drop=0.5, tie_embeddings=True,
                              ar_alpha=2.0, tar_beta=1.0, lstm_kernel=kernel).to(device).train()
        step = lm_step(model, torch.optim.SGD(model.parameters(), lr=30.0), batch, 0.25, rows)
        if graph:
            step = captured(step)
        else:
            step()
        name = f"{kernel}, {'graph' if graph else 'eager'}, bf16"
        result[name] = round(time_ms(step, repeats), 4)
        print("awd step", name, result[name], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    device = torch.device("cuda")
    record = {**provenance(), "kind": "lm-kernel", "gpu": torch.cuda.get_device_name(),
              "cudnn": torch.backends.cudnn.version(), "unit": "ms per step (median of 5 rounds)"}
    record["check"] = check(device)
    best_tiles = {}
    record["lstm_alone"] = lstm_alone(device, args.repeats, best_tiles)
    record["tiles"] = {"names": TILE_NAMES, "default": DEFAULT}
    for label, key, steps in (("zaremba 2 x 1500, 20 x 35", "zaremba_step", zaremba_steps),
                              ("awd 3 x 1150, 20 x 70", "awd_step", awd_steps)):
        record["tiles"][key] = f"triton {best_tiles[label]}"
        use_tile(best_tiles[label])
        record[key] = steps(device, args.repeats)
    use_tile(DEFAULT)
    z = record["zaremba_step"]  # (each step with its shape's best tile)
    record["zaremba_speedup_over_bare_eager_fp32"] = {k: round(z["bare, eager, fp32"] / v, 3) for k, v in z.items()}
    write_atomically(args.out, json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("zaremba_speedup_over_bare_eager_fp32", "awd_step")}))


if __name__ == "__main__":
    main()
