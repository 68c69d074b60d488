"""A bare PyTorch script of Zaremba et al.'s large PTB language model (no toolkit code): the
reference the toolkit's `configs/ptb-zaremba-large.yaml` run is timed against.

2 x 1500 LSTM (one eager cuDNN call per window), dropout 0.65, uniform init 0.04, SGD 1.0 divided
by 1.15 every epoch after 14, norm-10 clipping, batch 20, BPTT 35, the loss summed over a window's
steps and averaged over its rows, the state carried and detached between windows. Prints and
records, per epoch, the wall time, training tokens/s and the valid perplexity (batch 20).

    python benchmarks/lm_bare.py --data data/ptb --epochs 55 --out bare.json [--minutes 1.5]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def corpus(folder: Path):
    words = {}
    streams = {}
    for split in ("train", "valid", "test"):
        tokens = []
        for line in (folder / f"{split}.txt").read_text(encoding="utf-8").splitlines():
            tokens.extend(line.split() + ["<eos>"])
        if split == "train":
            for w in tokens:
                words.setdefault(w, len(words))
        streams[split] = torch.tensor([words[w] for w in tokens])
    return streams, len(words)


def batchify(stream: torch.Tensor, rows: int, device) -> torch.Tensor:
    n = len(stream) // rows
    return stream[: n * rows].view(rows, n).to(device)  # (rows, n)


class Model(nn.Module):
    def __init__(self, vocab: int, size: int = 1500, layers: int = 2, dropout: float = 0.65):
        super().__init__()
        self.embed, self.drop = nn.Embedding(vocab, size), nn.Dropout(dropout)
        self.lstm = nn.LSTM(size, size, layers, dropout=dropout, batch_first=True)
        self.out = nn.Linear(size, vocab)
        for p in self.parameters():
            nn.init.uniform_(p, -0.04, 0.04)

    def forward(self, x, state):
        out, state = self.lstm(self.drop(self.embed(x)), state)
        return self.out(self.drop(out)), state


def evaluate(model, data, bptt: int) -> float:
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for i in range(0, data.size(1) - 1, bptt):
            x, y = data[:, i:i + bptt], data[:, i + 1:i + 1 + bptt]
            x = x[:, : y.size(1)]
            logits, state = model(x, state)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    model.train()
    return math.exp(total / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=55)
    parser.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from nmt.provenance import provenance

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(1)
    streams, vocab = corpus(args.data)
    train, valid = batchify(streams["train"], 20, device), batchify(streams["valid"], 20, device)
    model = Model(vocab).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    record = {**provenance(), "recipe": "Zaremba et al. 2014 large, bare PyTorch", "epochs": []}
    started, trained_seconds = time.time(), 0.0
    for epoch in range(args.epochs):
        for group in optimizer.param_groups:
            group["lr"] = 1.0 / 1.15 ** max(epoch + 1 - 14, 0)
        epoch_start, tokens, state = time.time(), 0, None
        for i in range(0, train.size(1) - 1, 35):
            x, y = train[:, i:i + 35], train[:, i + 1:i + 36]
            x = x[:, : y.size(1)]
            state = tuple(s.detach() for s in state) if state is not None else None
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / x.size(0)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
            tokens += y.numel()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.time() - epoch_start
        trained_seconds += seconds
        ppl = evaluate(model, valid, 35)
        record["epochs"].append({"epoch": epoch + 1, "train_seconds": round(trained_seconds, 2),
                                 "tokens_per_second": round(tokens / seconds, 1), "valid_ppl": round(ppl, 3),
                                 "wall_seconds": round(time.time() - started, 2)})
        print(json.dumps(record["epochs"][-1]), flush=True)
        if args.out:
            args.out.write_text(json.dumps(record, indent=2) + "\n")
        if args.minutes and trained_seconds >= 60 * args.minutes:
            break


if __name__ == "__main__":
    main()
