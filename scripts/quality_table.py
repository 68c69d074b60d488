"""Print the README's quality table from quality_run.py records, with one reproducing command a row.

    python scripts/quality_table.py benchmarks/results/quality/*.json

A record trained under a time budget (train.max_minutes) stopped at some step; the command
printed beside it trains to that step instead (train.max_steps), so it repeats the same training
whatever else shares the GPU.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path


def reproducing_command(record: dict) -> str:
    words = shlex.split(record["command"])[1:]  # drop "python"
    out, skip = ["python3"], False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word == "--commit":
            skip = True
            continue
        if word.startswith("train.max_minutes="):
            if not record.get("steps"):  # evaluation only: no training to bound
                out.pop()  # its --set
                continue
            word = f"train.max_steps={record['steps']}"
        if i and words[i - 1] == "--out":
            word = f"runs/results/{Path(word).name}"
        out.append(word)
    return " ".join(shlex.quote(w) for w in out)


def ensemble_size(record: dict) -> int:
    words = shlex.split(record["command"])
    after = words[words.index("--eval-only") + 1:]
    return next((i for i, w in enumerate(after) if w.startswith("--")), len(after))


def rows(records: list[dict]) -> list[str]:
    lines = ["| run | config | steps (epochs) | training | device | test set | beam | BLEU | chrF | BLEU lowercased |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        config = next((w for w in shlex.split(r["command"]) if w.endswith(".yaml")), "?")
        epochs = f" ({r['epochs_trained']:.1f})" if r.get("epochs_trained") is not None else ""
        trained = f"{r['steps']:,}{epochs}" if r.get("steps") else f"ensemble of {ensemble_size(r)} (no training)"
        wall = f"{r['train_wall_seconds'] / 60:.1f} min" if r.get("train_wall_seconds") else "-"
        averaged = r.get("averaged", {})
        for name, tests in ((r["name"], r["tests"]),
                            (f"{r['name']}, mean of its {averaged.get('count') or len(averaged.get('checkpoints') or [])} "
                             "best checkpoints",
                             averaged.get("tests", {}))):
            for test, results in tests.items():
                for t in results:
                    lower = t.get("lowercased", {}).get("bleu", "-")
                    lines.append(f"| {name} | `{config}` | {trained} | {wall} | {r['device']} | {test} | {t['beam']} "
                                 f"| {t['bleu']} | {t['chrf']} | {lower} |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+")
    args = parser.parse_args(argv)
    records = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.records]
    print("\n".join(rows(records)))
    print("\nCommands (one a run):\n")
    for r in records:
        print(f"- {r['name']}: `{reproducing_command(r)}`")
    for r in records:  # a record that could not be written whole says what it holds
        if r.get("partial"):
            print(f"\nNote on {r['name']}: {r['partial']}")


if __name__ == "__main__":
    main()
