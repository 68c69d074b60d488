"""Wall time and peak memory of `nmt preprocess` on a corpus of the paper's scale.

Runs `python -m nmt preprocess` as a subprocess, with --tree on PYTHONPATH (this checkout by
default; a copy of older code to compare with), and samples its whole process tree from /proc
every --interval seconds: the sum of the resident set sizes (RSS: counts a page shared by two
processes twice), the sum of the proportional set sizes (PSS: shared pages split between their
processes, so the tree's real footprint), and the largest single process. Each line the command
prints is kept with its time, which times the phases. What else ran on the machine goes into the
record too: the load average and the CPU seconds of every other process during the run.

The corpus is made by scripts/make_scale_corpus.py unless --corpus names one:

    python scripts/benchmark_preprocess.py --pairs 1000000 --workdir /tmp/scale/b1m \\
        --out benchmarks/results/preprocess-1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.device import read_cpu_times  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from scripts.make_scale_corpus import summary, write_corpus  # noqa: E402

TATOEBA = ROOT.parent / "shared" / "data" / "tatoeba-en-fr"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float, str]]:
    """pid -> (parent pid, CPU seconds so far, command line) of every process that can be read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (name) "
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS, command.strip()[:160])
    return table


def _descendants(root: int, table: dict) -> list[int]:
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, (parent, _, _) in table.items() if parent in frontier]
        tree += frontier
    return tree


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in kB; (0, 0) once it is gone."""
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (OSError, IndexError):
        return 0, 0
    pss = next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return rss, pss


class TreeSampler(threading.Thread):
    """Samples the memory of a process and its descendants until the process ends."""

    def __init__(self, process: subprocess.Popen, interval: float):
        super().__init__(daemon=True)
        self.process, self.interval = process, interval
        self.peak_rss = self.peak_pss = self.peak_single = self.most_processes = 0
        self.pids: set[int] = set()  # every process of the tree seen
        self.first_seen: dict = {}  # pid -> its entry in the first sample that saw it (every process)
        self.last_seen: dict = {}
        self.timeline: list[tuple[float, int, int]] = []  # (seconds, tree RSS MB, tree PSS MB)

    def run(self) -> None:
        started = time.time()
        while self.process.poll() is None:
            table = _processes()
            for pid, entry in table.items():
                self.first_seen.setdefault(pid, entry)
            self.last_seen.update(table)
            pids = _descendants(self.process.pid, table)
            self.pids.update(pids)
            sizes = [_memory_kb(pid) for pid in pids]
            rss, pss = sum(r for r, _ in sizes), sum(p for _, p in sizes)
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_single = max([self.peak_single] + [r for r, _ in sizes])
            self.most_processes = max(self.most_processes, len(pids))
            self.timeline.append((round(time.time() - started, 1), rss // 1024, pss // 1024))
            time.sleep(self.interval)


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat: all but idle and
    iowait, as nmt.device.read_cpu_times counts them."""
    idle, total = read_cpu_times()
    return (total - idle) / TICKS


def _other_cpu(first: dict, last: dict, own: set[int], seconds: float) -> list[dict]:
    """The processes outside this benchmark that used CPU during the run, busiest first (from the
    first and last sample that saw each: a short-lived process is counted until its last sample)."""
    used = []
    for pid, (_, cpu, command) in last.items():
        if pid in own or pid == os.getpid():
            continue
        spent = cpu - first.get(pid, (0, 0.0, ""))[1]
        if spent >= 1.0:
            used.append({"pid": pid, "cpu_s": round(spent, 1), "share_of_one_core": round(spent / seconds, 2),
                         "command": command})
    return sorted(used, key=lambda p: -p["cpu_s"])[:10]


def run_preprocess(command: list[str], tree: Path, interval: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    load_before, busy_before, started = os.getloadavg(), _busy_seconds(), time.time()
    # cwd: `python -m` puts the working folder first on sys.path, ahead of PYTHONPATH
    process = subprocess.Popen(command, env=env, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(process, interval)
    sampler.start()
    lines = [(round(time.time() - started, 1), line.rstrip("\n")) for line in process.stdout]
    process.wait()
    seconds, busy = time.time() - started, _busy_seconds() - busy_before
    sampler.join()
    usage, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
    own_cpu, sampler_cpu = usage.ru_utime + usage.ru_stime, me.ru_utime + me.ru_stime
    return {"returncode": process.returncode, "wall_s": round(seconds, 1),
            "peak_tree_rss_mb": sampler.peak_rss // 1024, "peak_tree_pss_mb": sampler.peak_pss // 1024,
            "peak_single_process_rss_mb": sampler.peak_single // 1024,
            "ru_maxrss_children_mb": usage.ru_maxrss // 1024, "cpu_s": round(own_cpu, 1),
            "most_processes": sampler.most_processes, "sample_interval_s": interval, "output": lines,
            "memory_timeline": sampler.timeline[:: max(1, len(sampler.timeline) // 400)],
            "machine": {"cpu_count": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
                        "busy_cpu_s": round(busy, 1), "benchmark_sampler_cpu_s": round(sampler_cpu, 1),
                        "others_cpu_s": round(busy - own_cpu - sampler_cpu, 1),
                        "others_share_of_machine": round((busy - own_cpu - sampler_cpu) / (seconds * os.cpu_count()), 2),
                        "other_processes": _other_cpu(sampler.first_seen, sampler.last_seen,
                                                      sampler.pids | {process.pid}, seconds)}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, required=True, help="pairs to generate (or the size of --corpus)")
    parser.add_argument("--corpus", help="an existing training prefix (PREFIX.en, PREFIX.fr) instead of generating one")
    parser.add_argument("--seed-corpus", default=str(TATOEBA / "train"))
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the nmt source tree to run (PYTHONPATH)")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--joint", action="store_true", help="one vocabulary for both sides (default: one per side)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="passed to nmt preprocess")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--label", default="")
    parser.add_argument("--corpus-note", default="", help="how --corpus was made, for the record")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.workdir, args.tree = args.workdir.resolve(), args.tree.resolve()
    record = {"kind": "preprocess", "label": args.label, "pairs": args.pairs, **provenance(),
              "tree": str(args.tree), "joint_vocab": args.joint, "vocab_size": args.vocab_size}
    prefix = str(Path(args.corpus).resolve()) if args.corpus else None
    if prefix is None:
        prefix = str(args.workdir / "corpus" / "train")
        started = time.time()
        counts = write_corpus(args.seed_corpus, ("en", "fr"), args.pairs, Path(prefix), seed=1)
        record["corpus_generated"] = {"seconds": round(time.time() - started, 1), "seed": 1,
                                      "seed_corpus": args.seed_corpus, "histogram": summary(counts)}
    record["corpus"] = {"prefix": prefix, "note": args.corpus_note, "bytes": sum(Path(f"{prefix}.{lang}").stat().st_size for lang in ("en", "fr"))}
    command = [sys.executable, "-m", "nmt", "preprocess", "--src-lang", "en", "--tgt-lang", "fr", "--train", prefix,
               "--valid", str(TATOEBA / "valid"), "--test", str(TATOEBA / "test"),
               "--out", str(args.workdir / "prepared"), "--vocab-size", str(args.vocab_size),
               "--joint" if args.joint else "--separate", "--overwrite"]
    for override in args.overrides:
        command += ["--set", override]
    record["preprocess_command"] = command
    record.update(run_preprocess(command, args.tree, args.interval))
    manifest = args.workdir / "prepared" / "manifest.json"
    if record["returncode"] == 0 and manifest.is_file():
        record["manifest"] = json.loads(manifest.read_text())
    write_atomically(args.out, json.dumps(record, indent=1) + "\n")
    print(f"{args.pairs:,} pairs: {record['wall_s']:.0f} s, peak PSS {record['peak_tree_pss_mb']:,} MB "
          f"(RSS summed {record['peak_tree_rss_mb']:,} MB), exit {record['returncode']}")


if __name__ == "__main__":
    main()
