"""Train from a config (or take trained checkpoints), translate test sets, score, write one JSON record.

    python scripts/quality_run.py --config configs/multi30k-en-de.yaml --name multi30k-en-de \
        --out benchmarks/results/multi30k-en-de.json --lowercase-too
    python scripts/quality_run.py --config configs/multi30k-en-de.yaml --name ensemble-5 \
        --eval-only runs/a/best runs/b/best runs/c/best --out ...        # an ensemble, no training

The record holds the command, the commit (read from git, with a flag when the tree differs from it), device, torch version, training throughput read from the
run's log.jsonl, dev scores, and BLEU/chrF on the prepared test split (and on any --extra-test)
with sacreBLEU's signatures: default cased and detokenized; with --lowercase-too also lowercased
(13a-tokenized), the way older Multi30k papers report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nmt.config import load_config  # noqa: E402
from nmt.data.corpus import read_parallel  # noqa: E402
from nmt.data.prepare import prepare  # noqa: E402
from nmt.decode.translate import Translator  # noqa: E402
from nmt.evaluate import score  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.log import configure  # noqa: E402
from nmt.checkpoint import average_checkpoints, best_checkpoints  # noqa: E402
from nmt.train.start import train  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from nmt.train.progress import read_log  # noqa: E402


def throughput(run_dir: Path) -> dict:
    events = read_log(run_dir / "log.jsonl")
    train_events = [e for e in events if e["event"] == "train"][1:]  # the first window holds warm-up
    epochs = [e for e in events if e["event"] == "epoch_done"]  # (a run that stopped inside epoch 0 has none)
    rates = [e["tgt_tokens_per_second"] for e in train_events]
    return {
        "tgt_tokens_per_second_median": round(statistics.median(rates), 1) if rates else None,
        "peak_memory_gib": max((e.get("peak_memory_gib", 0) for e in train_events), default=None),
        "padding_fraction_epoch0": epochs[0]["padding_fraction"] if epochs else None,
        "epochs_trained": train_events[-1]["epoch"] if train_events else None,
        "dev": [e for e in events if e["event"] == "valid"],
    }


def evaluate(translator: Translator, sources, references, *, beam: int, lowercase_too: bool,
             save_to: Path | None = None) -> dict:
    started = time.time()
    outputs = [h[0].text for h in translator.translate(sources, translator.options(beam=beam))]
    result = {"beam": beam, "decode_seconds": round(time.time() - started, 1), **score(outputs, references).as_dict()}
    if lowercase_too:
        result["lowercased"] = score(outputs, references, lowercase=True).as_dict()
    if save_to is not None:
        write_atomically(save_to, "".join(line + "\n" for line in outputs))
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--beams", default=None, help="comma-separated test beams [decode.beam]")
    parser.add_argument("--lowercase-too", action="store_true", help="also score lowercased")
    parser.add_argument("--extra-test", action="append", default=[], help="name=PREFIX of another test set")
    parser.add_argument("--eval-only", nargs="+", default=None, help="checkpoints to evaluate (several: an ensemble)")
    parser.add_argument("--average", type=int, default=0,
                        help="after training, also evaluate the mean of the run's N best checkpoints (nmt average)")
    args = parser.parse_args(argv)
    configure()  # the trainer's messages (dev scores, averaging, why it stopped) on stderr, as nmt train prints them

    config = load_config(args.config, args.overrides)
    record = {"name": args.name, **provenance(), "config": config.to_dict()}
    if args.eval_only:
        checkpoints = args.eval_only
    else:
        if not (Path(config.data.prepared) / "manifest.json").exists():
            prepare(config.data, config.data.prepared)
        started = time.time()
        run_dir = train(config)
        trainer = json.loads((run_dir / "last" / "trainer.json").read_text())
        record.update(train_wall_seconds=round(time.time() - started, 1), steps=trainer["step"],
                      tgt_tokens_trained=trainer["tgt_tokens"], best_step=trainer["best_step"], **throughput(run_dir))
        checkpoints = [run_dir / "best"]
    translator = Translator.load(checkpoints, config.train.device)
    prepared = Path(config.data.prepared)
    tests = {"test": ((prepared / "test.src.txt").read_text(encoding="utf-8").splitlines(),
                      (prepared / "test.tgt.txt").read_text(encoding="utf-8").splitlines())}
    for extra in args.extra_test:
        name, prefix = extra.split("=")
        tests[name] = read_parallel(f"{prefix}.{config.data.src_lang}", f"{prefix}.{config.data.tgt_lang}")
    beams = [int(b) for b in args.beams.split(",")] if args.beams else [config.decode.beam]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def run_tests(translator: Translator, tag: str = "") -> dict:
        return {name: [evaluate(translator, src, ref, beam=b, lowercase_too=args.lowercase_too,
                                save_to=out.with_name(f"{out.stem}{tag}.{name}.beam{b}.hyp"))
                       for b in beams] for name, (src, ref) in tests.items()}

    record["tests"] = run_tests(translator)
    if args.average and not args.eval_only:
        folders = best_checkpoints(run_dir, args.average)
        averaged = average_checkpoints(folders, run_dir / f"average-{len(folders)}-step-{trainer['step']}")
        record["averaged"] = {"checkpoints": [f.name for f in folders],
                              "tests": run_tests(Translator.load(averaged, config.train.device), ".averaged")}
    write_atomically(out, json.dumps(record, indent=2) + "\n")
    for label, tested in (("", record["tests"]), (" averaged", record.get("averaged", {}).get("tests", {}))):
        for name, results in tested.items():
            for r in results:
                low = f" | lowercased {r['lowercased']['bleu']}" if "lowercased" in r else ""
                print(f"{args.name}{label} {name} beam {r['beam']}: BLEU {r['bleu']} chrF {r['chrf']}{low}")


if __name__ == "__main__":
    main()
