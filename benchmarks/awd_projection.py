"""Why the AWD-LSTM configs end their stack in a 400-unit layer, not in a projection: a bare PyTorch
loop of AWD-LSTM's shape on Penn Treebank (3 LSTM layers, tied 400-dim embedding, SGD at lr 30,
gradients clipped to norm 0.25, batch 20 x 70 windows, the state carried), with no regulariser, in
two forms side by side from the same seed:

  last400     AWD-LSTM's own: layers of 1150, 1150 and 400, the last one the embedding's size;
  projection  layers of 1150, 1150 and 1150, then a linear map from 1150 to 400 before the tied
              softmax (what configs/ptb-awd.yaml did before model.last_hidden).

It writes each step's training loss and gradient norm as one JSON record. No toolkit code runs
here: the record says what the recipe does, whatever the toolkit does.

    python benchmarks/awd_projection.py --data data/ptb --steps 15 --out benchmarks/results/lm/awd-projection-cpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.lm_bare import batchify, corpus  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402

EMBED, HIDDEN, ROWS, BPTT = 400, 1150, 20, 70


class Bare(nn.Module):
    def __init__(self, vocab: int, last: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, EMBED)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)  # AWD-LSTM's init; the LSTMs keep torch's
        sizes = [EMBED, HIDDEN, HIDDEN, last]
        self.lstms = nn.ModuleList(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(3))
        self.project = nn.Linear(last, EMBED, bias=False) if last != EMBED else None
        self.output = nn.Linear(EMBED, vocab)
        self.output.weight = self.embed.weight
        nn.init.zeros_(self.output.bias)

    def forward(self, tokens, states):
        x, carried = self.embed(tokens), []
        for lstm, state in zip(self.lstms, states):
            x, (h, c) = lstm(x, state)
            carried.append((h.detach(), c.detach()))
        return self.output(self.project(x) if self.project is not None else x), carried


def run(stream: torch.Tensor, vocab: int, last: int, steps: int, lr: float, seed: int) -> list[dict]:
    torch.manual_seed(seed)
    model = Bare(vocab, last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    states = [None] * 3
    out = []
    for step in range(steps):
        window = stream[:, step * BPTT:(step + 1) * BPTT + 1]
        logits, states = model(window[:, :-1], states)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        out.append({"step": step + 1, "loss": round(loss.item(), 4), "grad_norm": round(norm.item(), 4)})
        print(f"{'last400' if last == EMBED else 'projection'} step {step + 1}: loss {loss.item():.3f}, "
              f"gradient norm {norm.item():.3f}", flush=True)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/ptb", help="a folder with PTB's train.txt")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--lr", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    streams, vocab = corpus(Path(args.data))
    stream = batchify(streams["train"], ROWS, "cpu")
    record = {"what": "AWD-LSTM's shape on PTB, bare PyTorch, no regulariser: a 400-unit last layer "
                      "against a projection from 1150", **provenance(),
              "rows": ROWS, "bptt": BPTT, "lr": args.lr, "clip_norm": 0.25, "seed": args.seed,
              "threads": torch.get_num_threads(), "vocab": vocab}
    for name, last in (("last400", EMBED), ("projection", HIDDEN)):
        record[name] = run(stream, vocab, last, args.steps, args.lr, args.seed)
        record[f"{name}_max_loss"] = max(s["loss"] for s in record[name])
    write_atomically(Path(args.out), json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
