"""Time `nmt quickstart` as a new user runs it, with a given number of threads, alone or beside a
busy neighbour, and check its ETA: one JSON record with the command, commit and machine.

    python scripts/benchmark_quickstart.py --threads 1,2 --neighbour none,busy \\
        --out benchmarks/results/quickstart-cpu.json

Each case runs `python -m nmt quickstart --workdir TMP --set train.threads=N` in a fresh folder.
"busy" starts, for the whole case, another process that keeps PyTorch busy on the machine's cores
(matrix products with PyTorch's default threads), the situation of a shared 2-core machine.
Recorded per case: wall time, the test BLEU / chrF / exact matches it printed, the training steps,
and how far each ETA the progress line showed was from the time the training really took.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402

NEIGHBOUR = "import torch\na = torch.randn(1024, 1024)\nwhile True:\n    a = torch.tanh(a @ a)\n"
PROGRESS = re.compile(r"^step (\d+)/(\d+) .*?ETA (\d+):(\d+)$")
RESULT = re.compile(r"^test BLEU ([\d.]+)  chrF ([\d.]+)  exact match ([\d.]+)%")


def run_case(threads: int, neighbour: bool, extra: list[str]) -> dict:
    load_before = round(os.getloadavg()[0], 2)
    helper = subprocess.Popen([sys.executable, "-c", NEIGHBOUR]) if neighbour else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "nmt", "quickstart", "--workdir", str(Path(tmp) / "qs"),
                       "--set", f"train.threads={threads}", *extra]
            started, etas, stdout = time.time(), [], []
            process = subprocess.Popen(command, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
            for line in process.stdout:
                now = time.time() - started
                stdout.append(line.rstrip("\n"))
                match = PROGRESS.match(line.strip())
                if match:
                    etas.append((now, int(match[1]), int(match[2]), 60 * int(match[3]) + int(match[4])))
            process.wait()
            wall = time.time() - started
    finally:
        if helper is not None:
            helper.kill()
            helper.wait()
    result = {"threads": threads, "neighbour": "busy" if neighbour else "none", "returncode": process.returncode,
              "wall_seconds": round(wall, 1), "command": " ".join(command[1:]),
              # the machine's 1-minute load before and after: other work on a shared machine shows here
              "load_average_1min": {"before": load_before, "after": round(os.getloadavg()[0], 2)}}
    scores = next((RESULT.match(line) for line in stdout if RESULT.match(line)), None)
    if scores:
        result.update(bleu=float(scores[1]), chrf=float(scores[2]), exact_match_percent=float(scores[3]))
    if etas:
        train_end = etas[-1][0]  # the last progress line: training is (almost) over
        errors = [eta - (train_end - at) for at, step, total, eta in etas[:-1]]
        result.update(steps=etas[-1][2], training_seconds_to_last_report=round(train_end - etas[0][0], 1),
                      eta_error_seconds={"median": round(sorted(errors)[len(errors) // 2], 1) if errors else None,
                                         "largest": round(max(errors, key=abs), 1) if errors else None,
                                         "reports": len(etas)})
    if process.returncode != 0:
        result["output_tail"] = stdout[-5:]
    return result


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--neighbour", default="none,busy", help="none, busy, or both")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra quickstart --set")
    parser.add_argument("--out", default=None, help="JSON record to write")
    args = parser.parse_args(argv)
    # Stopped with SIGTERM, unwind, so that run_case's `finally` kills its busy neighbour (it
    # outlived a stopped run once and sat beside the next one's cases).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    extra = [word for override in args.overrides for word in ("--set", override)]
    header = provenance()
    records = []
    for neighbour in args.neighbour.split(","):
        for threads in map(int, args.threads.split(",")):
            record = run_case(threads, neighbour == "busy", extra)
            records.append({**record, **header})
            print(json.dumps(record), flush=True)
            if args.out:
                write_atomically(Path(args.out), json.dumps(records, indent=2) + "\n")
    return records


if __name__ == "__main__":
    main()
