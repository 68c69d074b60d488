"""Train a language model from a config (or take a trained one), score its test split, write one
JSON record: the command, commit, device, training time, the dev curve, test perplexity per word
and per token, bits per character, and the checkpoint's size.

    python scripts/lm_run.py --config ptb-zaremba-large --name ptb-zaremba-large --out runs/ptb.json
    python scripts/lm_run.py --config ptb-awd --resume runs/ptb-awd --set train.max_minutes=9 ...
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmt.checkpoint import load_model  # noqa: E402
from nmt.config import load_config  # noqa: E402
from nmt.data.corpus import read_lines  # noqa: E402
from nmt.device import pick_device  # noqa: E402
from nmt.errors import NmtError  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.log import configure  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from nmt.tasks import prepare_data  # noqa: E402
from nmt.tasks.lm import score_text  # noqa: E402
from nmt.train.progress import read_log  # noqa: E402
from nmt.train.start import resume, train  # noqa: E402


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.resolve().iterdir() if p.is_file())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--resume", default=None, help="continue this run folder instead of starting one")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--test-rows", type=int, default=1, help="parallel rows when scoring the test split")
    args = parser.parse_args(argv)
    configure()  # the trainer's messages (dev scores, averaging, why it stopped) on stderr, as nmt train prints them
    config = load_config(args.config, args.overrides)
    record = {"name": args.name, **provenance(), "config": config.to_dict()}
    if not (Path(config.data.prepared) / "manifest.json").exists():
        prepare_data(config)
    started = time.time()
    try:
        run_dir = resume(Path(args.resume), args.overrides) if args.resume else train(config)
    except NmtError as e:  # stopped by a signal (a time limit): the checkpoint it saved is scored all the same
        if not e.interrupt:
            raise
        print(f"{e}: scoring the saved checkpoint", file=sys.stderr)
        run_dir = Path(args.resume or config.train.run_dir)
        record["stopped"] = str(e)
    trainer = json.loads((run_dir / "last" / "trainer.json").read_text())
    events = read_log(run_dir / "log.jsonl")
    rates = [e["tgt_tokens_per_second"] for e in events if e["event"] == "train"][1:]
    record.update(wall_seconds=round(time.time() - started, 1), train_seconds=round(trainer["train_seconds"], 1),
                  steps=trainer["step"], tokens_trained=trainer["tgt_tokens"],
                  epochs=next((e["epoch"] for e in reversed(events) if e["event"] == "train"), 0),
                  median_tokens_per_second=sorted(rates)[len(rates) // 2] if rates else None,
                  averaged_steps=trainer.get("average_count", 0),
                  dev=[{k: e[k] for k in ("step", "ppl") if k in e} | {"time": e["time"]}
                       for e in events if e["event"] == "valid"])
    device = pick_device(config.train.device)
    loaded = load_model(run_dir / "best", device)
    for split in ("valid", "test"):
        path = getattr(config.data, split)
        if path:
            record[split] = score_text(loaded.model, loaded.tgt_tokenizer, read_lines(path), config, device,
                                       args.test_rows)
    record["checkpoint_bytes"] = folder_bytes(run_dir / "best")
    write_atomically(Path(args.out), json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record.get(k) for k in ("name", "train_seconds", "steps", "epochs")}))
    for split in ("valid", "test"):
        if split in record:
            print(f"{split}: {record[split]['ppl_per_word']:.2f} per word, "
                  f"{record[split]['bits_per_character']:.3f} bits per character")
    return record


if __name__ == "__main__":
    main()
