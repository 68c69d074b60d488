"""Before and after the fast path by default: `nmt train` on a config with the eager loop forced and
with the defaults (`auto`: static shapes and CUDA graphs on CUDA, each shape captured when first met).

Each case is `python -m nmt train --config CONFIG` as a subprocess, stopped by --max-minutes of
training (train.max_minutes) or --steps (train.max_steps), so that the cases fit in a short slot
on a GPU machine. Measured per case, from the subprocess's start and its log.jsonl:
  - seconds to the first step: the trainer's `first_step` event (written once the first step
    is done on the device) minus the time the command was started;
  - wall seconds of the whole command (start-up, training, evaluations, the final save);
  - steps done, target tokens/s (steady: from the second report to the last, by the reports'
    own times), the graphs captured and their capture seconds;
  - the whole recipe's training time: measured (the wall seconds) when the case's last step,
    the final evaluation's, reached the planned steps, otherwise
    projected, as seconds to the first step + the remaining planned steps at the steady rate
    (no evaluations counted), and marked "projected".
--old-tree runs one more case on another source tree (e.g. `git archive a15dddd`, which captured
every shape up front) with `--old-sets`. One JSON record (nmt/provenance.py) goes to --out.

    python scripts/benchmark_fast_path.py --config tatoeba-en-fr --data ../shared/data/tatoeba-en-fr \\
        --max-minutes 1.2 --out benchmarks/results/fast-path-tatoeba-h200.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.config import load_config  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402

TATOEBA = [ROOT / "shared" / "data" / "tatoeba-en-fr", ROOT.parent / "shared" / "data" / "tatoeba-en-fr"]
CASES = {
    "eager": ["train.static_shapes=false", "train.cuda_graphs=false"],  # the default before
    "auto": [],  # the default now
}


def prepare(config_name: str, data: Path, prepared: Path) -> float:
    """`nmt preprocess` of the config's corpus from `data` (PREFIX.SRC / .TGT files named train,
    valid, test) into `prepared`; returns its seconds."""
    config = load_config(config_name)
    sets = [f"data.{split}={data / split}" for split in ("train", "valid", "test")] + [f"data.prepared={prepared}"]
    started = time.time()
    subprocess.run([sys.executable, "-m", "nmt", "preprocess", "--config", config_name, "--overwrite",
                    *(arg for s in sets for arg in ("--set", s))], cwd=ROOT, check=True)
    assert (prepared / "manifest.json").is_file(), config.data
    return round(time.time() - started, 1)


def _steady_rate(reports: list[dict]) -> tuple[float | None, float | None]:
    """(steps/s, target tokens/s) between the first and the last progress report."""
    if len(reports) < 2 or reports[-1]["time"] <= reports[0]["time"]:
        return None, None
    seconds = reports[-1]["time"] - reports[0]["time"]
    steps = reports[-1]["step"] - reports[0]["step"]
    tokens = sum(r["tgt_tokens_per_second"] for r in reports[1:]) / len(reports[1:])  # each report's own rate
    return steps / seconds, tokens


def run_case(name: str, tree: Path, config_name: str, prepared: Path, workdir: Path, sets: list[str],
             max_minutes: float | None, steps: int | None) -> dict:
    run_dir = workdir / f"run-{name}"
    sets = [f"data.prepared={prepared}", f"train.run_dir={run_dir}", *sets]
    if max_minutes is not None:
        sets.append(f"train.max_minutes={max_minutes}")
    if steps is not None:
        sets.append(f"train.max_steps={steps}")
    command = [sys.executable, "-m", "nmt", "train", "--config", config_name, *(a for s in sets for a in ("--set", s))]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.time()
    result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.time() - started
    out = {"command": command, "tree": str(tree), "returncode": result.returncode, "wall_s": round(wall, 1),
           "output_tail": (result.stdout + result.stderr).splitlines()[-25:],
           "capture_lines": [line for line in (result.stdout + result.stderr).splitlines() if "CUDA graph" in line][:5]}
    written = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    out["resolved"] = {key: next((line.split(":", 1)[1].strip() for line in written.splitlines()
                                  if line.strip().startswith(f"{key}:")), None)
                       for key in ("static_shapes", "cuda_graphs")}
    log = run_dir / "log.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    out.update(summarize(events, started, config_name, out["wall_s"]))
    return out


def summarize(events: list[dict], started: float, config_name: str, wall_s: float) -> dict:
    """What a case's log.jsonl says, timed from the command's start (unix seconds)."""
    out = {}
    first = next((e for e in events if e["event"] == "first_step"), None)
    reports = [e for e in events if e["event"] == "train"]
    epoch = next((e for e in events if e["event"] == "epoch"), None)
    if first is not None:  # (a tree before the first_step event has none)
        out["seconds_to_first_step"] = round(first["unix_time"] - started, 2)
        out["trainer_seconds_to_first_step"] = first["seconds"]
    if reports:
        last = reports[-1]
        rate, tokens = _steady_rate(reports)
        out.update(steps=last["step"], reports=len(reports), steady_steps_per_s=rate and round(rate, 2),
                   steady_tgt_tokens_per_s=tokens and round(tokens), graphs=last.get("graphs"),
                   capture_seconds=last.get("capture_seconds"), eager_steps=last.get("eager_steps"))
    if epoch is not None and reports:
        epochs = load_config(config_name).train.epochs
        planned = math.ceil(epochs * epoch["batches"])
        done = max(e.get("step", 0) for e in events)  # the final evaluation's step: the last step done
        out.update(planned_steps=planned, last_step=done)
        if done >= planned:
            out["whole_recipe_train_s"] = {"seconds": wall_s, "how": "measured (wall, evaluations included)"}
        elif rate and first is not None:
            seconds = reports[-1]["time"] - started + (planned - reports[-1]["step"]) / rate
            out["whole_recipe_train_s"] = {"seconds": round(seconds, 1),
                                           "how": "projected: time to the last report + remaining steps at the "
                                                  "steady rate; evaluations after the last report not counted"}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tatoeba-en-fr")
    parser.add_argument("--prepared", type=Path, help="a prepared folder for the config (else --data is preprocessed)")
    parser.add_argument("--data", type=Path, default=next((p for p in TATOEBA if p.is_dir()), TATOEBA[-1]),
                        help="folder of the corpus: train.SRC, train.TGT, valid.*, test.* "
                             "(default: shared/data/tatoeba-en-fr in or beside this checkout)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fast-path"))
    parser.add_argument("--cases", default="eager,auto")
    parser.add_argument("--max-minutes", type=float, default=None, help="training minutes per case")
    parser.add_argument("--steps", type=int, default=None, help="steps per case (with or instead of --max-minutes)")
    parser.add_argument("--old-tree", type=Path, help="another source tree, run as one more case 'old'")
    parser.add_argument("--old-sets", default="train.static_shapes=true,train.cuda_graphs=true",
                        help="its config overrides, comma-separated")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--reparse", nargs="+", metavar="CASE=LOG",
                        help="read each CASE of the record --out again from its run's log.jsonl (kept from the "
                             "run) with this script's rules, and rewrite the record; nothing is run")
    args = parser.parse_args(argv)
    if args.reparse:
        return reparse(args.out, dict(item.split("=", 1) for item in args.reparse))
    if args.max_minutes is None and args.steps is None:
        parser.error("give --max-minutes or --steps (or both), so that the cases fit the time there is")
    args.workdir.mkdir(parents=True, exist_ok=True)
    record = {"kind": "fast-path", **provenance(), "config": args.config, "max_minutes": args.max_minutes,
              "steps": args.steps, "load_before": os.getloadavg()}
    prepared = args.prepared
    if prepared is None:
        prepared = args.workdir / "prepared"
        record["preprocess_seconds"] = prepare(args.config, args.data.resolve(), prepared)
    record["prepared"] = str(prepared)
    cases = {name: (ROOT, CASES[name]) for name in args.cases.split(",")}
    if args.old_tree:
        cases["old"] = (args.old_tree.resolve(), [s for s in args.old_sets.split(",") if s])
    record["cases"] = {}
    for name, (tree, sets) in cases.items():
        record["cases"][name] = result = run_case(name, tree, args.config, prepared.resolve(), args.workdir.resolve(),
                                                  sets, args.max_minutes, args.steps)
        print(f"{name}: exit {result['returncode']}, first step after {result.get('seconds_to_first_step')} s, "
              f"{result.get('steps')} steps in {result['wall_s']} s, {result.get('steady_tgt_tokens_per_s')} "
              f"target tokens/s, graphs {result.get('graphs')}, whole recipe {result.get('whole_recipe_train_s')}",
              flush=True)
        write_atomically(args.out, json.dumps(record, indent=1) + "\n")  # after each case: a cut-off run keeps some
    record["load_after"] = os.getloadavg()
    write_atomically(args.out, json.dumps(record, indent=1) + "\n")


def reparse(out: Path, logs: dict[str, str]) -> None:
    """Re-read cases from their logs: for a record written before a fix to `summarize`. The
    command's start is recovered from the record's own time to the first step."""
    record = json.loads(out.read_text())
    for name, log in logs.items():
        case = record["cases"][name]
        events = [json.loads(line) for line in Path(log).read_text().splitlines()]
        first = next(e for e in events if e["event"] == "first_step")
        started = first["unix_time"] - case["seconds_to_first_step"]
        case.update(summarize(events, started, record["config"], case["wall_s"]))
        print(f"{name}: whole recipe {case.get('whole_recipe_train_s')}")
    record.setdefault("reparsed", []).append({"commit": provenance()["commit"], "cases": sorted(logs),
                                              "why": "summarize() read again from the runs' log.jsonl"})
    write_atomically(out, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
