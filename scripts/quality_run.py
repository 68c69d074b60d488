"""Train from a config, translate the test split, score it, and write one JSON record.

    python scripts/quality_run.py --config configs/tatoeba-en-fr.yaml --name tatoeba-en-fr \
        --set train.max_minutes=5 --out benchmarks/results/tatoeba-en-fr.json --commit $(git rev-parse HEAD)

The record holds the command, commit, device, torch version, the training throughput read from
the run's log.jsonl, dev scores, and test BLEU/chrF with sacreBLEU's signatures (default cased
and detokenized; with --lowercase-too also lowercased, as older papers report).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from nmt.config import load_config
from nmt.data.prepare import prepare
from nmt.decode.translate import Translator
from nmt.evaluate import score
from nmt.files import write_atomically
from nmt.train.loop import train


def throughput(run_dir: Path) -> dict:
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    train_events = [e for e in events if e["event"] == "train"][1:]  # the first window holds warm-up
    valid = [e for e in events if e["event"] == "valid"]
    epochs = [e for e in events if e["event"] == "epoch"]
    rates = [e["tgt_tokens_per_second"] for e in train_events]
    return {
        "tgt_tokens_per_second_median": round(statistics.median(rates), 1) if rates else None,
        "peak_memory_gib": max((e.get("peak_memory_gib", 0) for e in train_events), default=None),
        "padding_fraction_epoch0": epochs[0]["padding_fraction"] if epochs else None,
        "epochs_trained": train_events[-1]["epoch"] if train_events else None,
        "dev": valid,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--commit", default="unknown")
    parser.add_argument("--beam", type=int, default=None, help="test beam [decode.beam]")
    parser.add_argument("--lowercase-too", action="store_true", help="also score lowercased, tokenized (13a)")
    args = parser.parse_args(argv)

    config = load_config(args.config, args.overrides)
    if not (Path(config.data.prepared) / "manifest.json").exists():
        prepare(config.data, config.data.prepared)
    started = time.time()
    run_dir = train(config)
    train_wall = time.time() - started
    trainer = json.loads((run_dir / "last" / "trainer.json").read_text())

    prepared = Path(config.data.prepared)
    sources = (prepared / "test.src.txt").read_text(encoding="utf-8").splitlines()
    references = (prepared / "test.tgt.txt").read_text(encoding="utf-8").splitlines()
    translator = Translator.load(run_dir / "best", config.train.device)
    beam = args.beam or config.decode.beam
    started = time.time()
    outputs = [h[0][0] for h in translator.translate(sources, beam=beam, batch_size=config.decode.batch_size)]
    decode_seconds = time.time() - started
    write_atomically(run_dir / "test.hyp", "".join(line + "\n" for line in outputs))
    test = score(outputs, references).as_dict()
    record = {
        "name": args.name,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "commit": args.commit,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch": torch.__version__,
        "config": config.to_dict(),
        "train_wall_seconds": round(train_wall, 1),
        "steps": trainer["step"],
        "tgt_tokens_trained": trainer["tgt_tokens"],
        "best_step": trainer["best_step"],
        **throughput(run_dir),
        "test_beam": beam,
        "test_decode_seconds": round(decode_seconds, 1),
        "test": test,
    }
    if args.lowercase_too:
        record["test_lowercased"] = score([o.lower() for o in outputs], [r.lower() for r in references],
                                          lowercase=True).as_dict()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(out, json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("name", "steps", "tgt_tokens_per_second_median", "train_wall_seconds")}))
    print(f"test BLEU {test['bleu']} chrF {test['chrf']} ({test['bleu_signature']})")


if __name__ == "__main__":
    main()
