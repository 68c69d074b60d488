"""How long `nmt train` takes to reach its first step on a large prepared folder, and what the
samplers cost: the data side of starting a run at the paper's scale (12M pairs).

(a) In this process: load the training split (ParallelData) and read epoch 0's batches from
    BucketSampler and StaticShapeSampler (train.batch_size sentences): the epoch object, its
    count, its first batch, and the whole epoch made and read once (none kept), each timed, with
    the peak of numpy's allocations (tracemalloc: the sampler's memory; the memory-mapped files
    are page cache, not allocations) and the batches' digest (to show that a change to the
    samplers kept every batch: same digest before and after).
(b) `python -m nmt train` as a subprocess, with a small model on the CPU and log_every=1: the
    seconds from the start until the "epoch 0" line (everything made, the first batch next), until
    the first progress line (the first step done: its batch read and trained on) and until the
    trainer's `first_step` event in log.jsonl, and the peak resident memory of the process until
    that line and over the whole run (its end evaluates and saves: more than starting takes),
    sampled from /proc every 0.2 s, as scripts/benchmark_preprocess.py does.

    python scripts/benchmark_train_start.py --prepared /tmp/scale/b12m/prepared --workdir /tmp/scale/start \\
        --out benchmarks/results/train-start-12m.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.data.batching import ParallelData  # noqa: E402
from nmt.data.samplers import BucketSampler, StaticShapeSampler  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from scripts.benchmark_preprocess import TreeSampler  # noqa: E402


def _digest(batches) -> str:
    h = hashlib.sha256()
    for batch in batches:
        h.update(np.asarray(batch, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def _median(values):
    """The middle of the values measured (the upper one of an even count), or None if none was."""
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def _timed(action):
    tracemalloc.start()
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, {"seconds": round(seconds, 2), "peak_alloc_mb": round(peak / 2**20)}


def samplers(prepared: Path, batch_size: int, seed: int) -> dict:
    data, record = _timed(lambda: ParallelData(prepared, "train"))
    out = {"pairs": len(data), "load": record}
    src, tgt = data.lengths("src"), data.lengths("tgt")
    for name, make in (("bucket", lambda: BucketSampler(src, tgt, batch_size=batch_size, seed=seed)),
                       ("static_shapes", lambda: StaticShapeSampler(src, tgt, batch_size=batch_size, seed=seed))):
        sampler = make()
        batches, epoch = _timed(lambda: sampler.epoch(0))
        count, counted = _timed(lambda: len(batches))
        _, first = _timed(lambda: next(iter(batches)))
        digest, whole = _timed(lambda: _digest(batches))
        padding, padding_time = _timed(lambda: sampler.padding_fraction(batches))
        out[name] = {"epoch": epoch, "count": counted, "first_batch": first, "whole_epoch": whole,
                     "padding_fraction": padding_time, "batches": count, "padding": round(padding, 6),
                     "batches_sha256": digest}
    return out


def first_step(prepared: Path, workdir: Path, batch_size: int, static: bool) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = workdir / f"run-{'static' if static else 'bucket'}"
    shutil.rmtree(run_dir, ignore_errors=True)  # this script's own folder: a run of an earlier call would refuse to start
    config = {"data": {"prepared": str(prepared)},
              "model": {"layers": 1, "hidden": 64, "embed": 32},
              "train": {"run_dir": str(run_dir), "device": "cpu",
                        "threads": 1, "batch_size": batch_size, "max_steps": 2, "log_every": 1, "eval_every": 1000,
                        "save_every": 1000, "static_shapes": static}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "nmt", "train", "--config", str(workdir / "config.yaml")]
    started = time.time()
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(process, 0.2)
    sampler.start()
    lines, first, peak_at_first, ready = [], None, None, None
    for line in process.stdout:
        lines.append((round(time.time() - started, 2), line.rstrip("\n")))
        if ready is None and line.startswith("epoch 0:"):  # model, optimizer and epoch 0 made; its first batch next
            ready = time.time() - started
        if first is None and line.startswith(("step 1/", "step 1 ")):  # the progress line of step 1
            first = time.time() - started
            peak_at_first = sampler.peak_single  # what starting took, before the run's later evaluation
    process.wait()
    sampler.join()
    if process.returncode != 0:  # a run that did not train measures nothing: say why, write no record
        raise SystemExit(f"nmt train exited with {process.returncode}:\n" + "\n".join(text for _, text in lines[-20:]))
    log = Path(config["train"]["run_dir"]) / "log.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    logged = next((e for e in events if e.get("event") == "first_step"), None)
    return {"command": command, "config": config, "returncode": process.returncode,
            "seconds_to_first_step": None if first is None else round(first, 2),
            "seconds_to_epoch_line": None if ready is None else round(ready, 2),
            # the trainer's own first_step event: from the command's start, and from the Trainer's
            "seconds_to_first_step_logged": None if logged is None else round(logged["unix_time"] - started, 2),
            "trainer_seconds_to_first_step": None if logged is None else logged["seconds"],
            "peak_rss_to_first_step_mb": None if peak_at_first is None else peak_at_first // 1024,
            "peak_rss_mb": sampler.peak_single // 1024, "output": lines[:40]}


def page_cache(prepared: Path, cache: str) -> str:
    """The prepared files warm in the page cache (just written, as after `nmt preprocess`) or cold
    (as after a reboot): the first batches read the memory-mapped ids, seconds apart at 12M pairs."""
    if cache == "warm":
        for path in sorted(prepared.iterdir()):
            with open(path, "rb") as f:
                while f.read(1 << 24):
                    pass
        return "warm: every prepared file read just before"
    if cache == "cold":  # only the prepared files leave the cache (not torch's libraries, as a reboot would)
        os.sync()
        for path in sorted(prepared.iterdir()):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "cold: the prepared files' pages dropped from the page cache just before (posix_fadvise)"
    return "as it was (the case before read the same files)"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepared", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-train", action="store_true", help="only (a), the samplers in this process")
    parser.add_argument("--label", default="")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each case (their median is reported)")
    parser.add_argument("--page-cache", default="as-is",
                        help="before each `nmt train`: as-is, warm (the prepared files read once), cold (their "
                             "pages dropped from the page cache), or several, comma-separated")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    record = {"kind": "train-start", "label": args.label, **provenance(), "prepared": str(args.prepared),
              "load_before": os.getloadavg(), "samplers": samplers(args.prepared, args.batch_size, args.seed)}
    if not args.skip_train:
        record["first_step"] = {}
        for repeat in range(args.repeats):  # the cases interleaved: a slow spell of the machine hits all of them
            for cache in args.page_cache.split(","):
                for mode in ("bucket", "static"):
                    state = page_cache(args.prepared, cache)
                    workdir = args.workdir / f"{cache}-{repeat}"  # a run folder per case
                    result = first_step(args.prepared, workdir, args.batch_size, mode == "static")
                    name = mode if cache == "as-is" else f"{mode}, {cache} cache"
                    record["first_step"].setdefault(name, {"page_cache": state, "runs": []})["runs"].append(result)
        for case in record["first_step"].values():
            case["seconds_to_first_step"] = [r["seconds_to_first_step"] for r in case["runs"]]
            for key in ("seconds_to_first_step", "seconds_to_epoch_line"):
                case[f"median_{key}"] = _median(r[key] for r in case["runs"])
    record["load_after"] = os.getloadavg()
    write_atomically(args.out, json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record["samplers"].items()}, indent=1))
    for name, case in record.get("first_step", {}).items():
        peaks = [r["peak_rss_to_first_step_mb"] for r in case["runs"]]
        print(f"{name}: first step after {case['seconds_to_first_step']} s (median "
              f"{case['median_seconds_to_first_step']}), peak RSS until then {peaks} MB")


if __name__ == "__main__":
    main()
