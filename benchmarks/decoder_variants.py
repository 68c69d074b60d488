"""Which per-step decoder trains fastest with input feeding? Bare models, one full training step.

Input feeding forces a loop over target positions. Three ways to write one step of a 2-layer LSTM
decoder are timed, eager and captured in one CUDA graph (with autocast's weight cache on, as the
toolkit captures since it steps with cells, and off, as it captured before), with
`benchmark_train.bare_ceiling`:
  lstm-call   one fused nn.LSTM call (cuDNN, all layers) per step: what the ceiling uses (and nmt
              did before it stepped with cells);
  cells       one LSTM cell per layer per step (what nmt and OpenNMT-py step);
  cells-pre   the same cells, with the embedding half of layer 1's input projection computed for
              all steps in one matrix multiply before the loop.

    python3 benchmarks/decoder_variants.py --out benchmarks/results/decoder-variants-h100.json --commit C
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmt.provenance import provenance  # noqa: E402
from scripts.benchmark_train import ARCHS, BareSeq2Seq, bare_ceiling, guarded  # noqa: E402


class CellSteps(BareSeq2Seq):
    """BareSeq2Seq's attention model with its decoder stepped as LSTMCells."""

    def __init__(self, arch):
        super().__init__(arch)
        del self.decoder
        h = arch.hidden
        self.cells = nn.ModuleList(nn.LSTMCell(arch.embed + h if i == 0 else h, h) for i in range(arch.layers))

    def start(self, embedded, state):
        h, c = state
        return embedded, (list(h.unbind(0)), list(c.unbind(0)))

    def step(self, x, feed, state):
        hs, cs = state
        for i, cell in enumerate(self.cells):
            hs[i], cs[i] = cell(torch.cat([x, feed], -1) if i == 0 else hs[i - 1], (hs[i], cs[i]))
        return hs[-1].unsqueeze(1), (hs, cs)


class PrecomputedCellSteps(CellSteps):
    """The cells, with the embedding part of layer 1's gates computed for all positions at once."""

    def start(self, embedded, state):
        _, (hs, cs) = super().start(embedded, state)
        first, e = self.cells[0], self.arch.embed
        pre = F.linear(embedded, first.weight_ih[:, :e], first.bias_ih + first.bias_hh)  # (B, T, 4H)
        recurrent = torch.cat([first.weight_ih[:, e:], first.weight_hh], 1)  # [feed; h] -> gates
        return pre, (hs, cs, recurrent)

    def step(self, gates_from_embedding, feed, state):
        hs, cs, recurrent = state
        gates = gates_from_embedding + torch.cat([feed, hs[0]], -1) @ recurrent.t()
        in_gate, forget, update, out_gate = gates.float().chunk(4, 1)
        cs[0] = torch.sigmoid(forget) * cs[0] + torch.sigmoid(in_gate) * torch.tanh(update)
        hs[0] = torch.sigmoid(out_gate) * torch.tanh(cs[0])
        for i in range(1, len(self.cells)):
            hs[i], cs[i] = self.cells[i](hs[i - 1], (hs[i], cs[i]))
        return hs[-1].unsqueeze(1), (hs, cs, recurrent)


VARIANTS = {"lstm-call": BareSeq2Seq, "cells": CellSteps, "cells-pre": PrecomputedCellSteps}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", default="128x25", help="batch x length")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (a CPU smoke test)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    arch = ARCHS["attention"]
    if args.tiny:
        arch = replace(arch, layers=2, hidden=16, embed=16, vocab=64)
    batch, length = map(int, args.shape.split("x"))
    header = {**provenance(), "arch": arch.name, "shape": args.shape}
    records = []
    # "graph" keeps autocast's weight cache on (one bf16 copy of each weight per step, cast inside
    # the captured step), as the toolkit does; "graph-nocache" casts a weight at every use.
    modes = {"eager": (False, True), "graph": (True, True), "graph-nocache": (True, False)}
    for name, model_class in VARIANTS.items():
        for mode, (graph, cache) in modes.items():
            if graph and device.type != "cuda":
                continue
            result = guarded(bare_ceiling, arch, batch, length, device, steps=args.steps, graph=graph, bf16=True,
                             model_class=model_class, autocast_cache=cache)
            records.append({"variant": name, "mode": mode, **result, **header})
            shown = f"{result['tgt_tokens_per_second']:>10,.0f} tok/s {result['step_ms']:7.2f} ms" \
                if "error" not in result else result["error"]
            print(f"{name:10} {mode:11} {shown}", flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    return records


if __name__ == "__main__":
    main()
