"""Where a decoding pass spends its time, beyond the steps: the host's time in each part of the
search, and the device's kernel time, over the same passes as scripts/benchmark_decode.py.

For each model and beam: one pass to warm up (captures included), then
  host      one pass with a timer around each part of the search: queueing a batch's whole loop
            (`run`, which holds the rest but `collect`), starting it (`start`), replaying or
            capturing steps (`steps`), waiting for the done count (`known`: the host waiting for
            the device), shrinking the batch (`checked`), and reading the results (`collect`);
            seconds summed over the pass and the one batch that warms it up
            (benchmark_decode's timed_search), and calls
  device    one pass under torch.profiler: the kernels' total time against the pass's wall time
            (their ratio: how busy the device was), and the costliest kernels
A pass whose device is busy most of its time is bound by the steps' own work; one whose host sums
to its wall time, with the device idle between, by the host.

    python scripts/profile_decode.py --src newstest2014.en-fr.en --archs attention --beams 1,12 \\
        --out benchmarks/results/decode/profile-h200.json

`--tiny` shrinks the models for a CPU smoke test (tests/test_benchmark.py); on the CPU the device
column is the CPU's own operators.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.decode import beam as loop  # noqa: E402
from nmt.decode import graphs  # noqa: E402
from nmt.decode import search as search_module  # noqa: E402
from nmt.files import write_json  # noqa: E402
from nmt.provenance import provenance  # noqa: E402
from scripts.benchmark_decode import arch_config, batches, random_model, source_lengths, timed_search  # noqa: E402

# (owner, attribute, the name reported): the parts of the search the host timer wraps
PARTS = ((loop, "run", "run"), (loop, "start", "start"), (loop, "checked", "checked"),
         (search_module, "collect", "collect"), (loop.DoneCount, "known", "known"),
         (graphs.CapturedSteps, "__call__", "steps"), (graphs.EagerSteps, "__call__", "steps"))


@contextlib.contextmanager
def host_timers():
    """Each part in PARTS wrapped by a timer while the block runs: yields {name: [seconds, calls]}."""
    totals: dict = collections.defaultdict(lambda: [0.0, 0])
    originals = [(owner, attribute, getattr(owner, attribute)) for owner, attribute, _ in PARTS]

    def timed(function, name):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                totals[name][0] += time.perf_counter() - started
                totals[name][1] += 1
        return wrapper

    for (owner, attribute, name), (_, _, function) in zip(PARTS, originals):
        setattr(owner, attribute, timed(function, name))
    try:
        yield totals
    finally:
        for owner, attribute, function in originals:
            setattr(owner, attribute, function)


def device_profile(run, device: torch.device, top: int) -> dict:
    """run() under torch.profiler: its wall time, the device's kernel time, the costliest kernels."""
    activities = [ProfilerActivity.CUDA] if device.type == "cuda" else [ProfilerActivity.CPU]
    kind = torch.autograd.DeviceType.CUDA if device.type == "cuda" else torch.autograd.DeviceType.CPU
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        run()
    wall = time.perf_counter() - started
    per_name: dict = collections.defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.device_type == kind and (device.type == "cuda" or event.cpu_parent is None):
            busy = event.device_time_total if device.type == "cuda" else event.cpu_time_total
            per_name[event.name[:80]][0] += busy / 1e6
            per_name[event.name[:80]][1] += 1
    busy = sum(seconds for seconds, _ in per_name.values())
    costliest = sorted(per_name.items(), key=lambda item: -item[1][0])[:top]
    return {"profiled_seconds": round(wall, 4), "busy_seconds": round(busy, 4), "busy_fraction": round(busy / wall, 3),
            "costliest": [{"name": name, "seconds": round(seconds, 5), "calls": calls}
                          for name, (seconds, calls) in costliest]}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, required=True, help="source text, one sentence per line")
    parser.add_argument("--spm", type=Path, default=None, help="SentencePiece model for the lengths [train one]")
    parser.add_argument("--spm-vocab", type=int, default=32000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--archs", default="paper,attention")
    parser.add_argument("--beams", default="1,12")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None, help="only the first N sentences of --src")
    parser.add_argument("--no-cuda-graphs", action="store_true")
    parser.add_argument("--top", type=int, default=15, help="kernels listed per case")
    parser.add_argument("--tiny", action="store_true", help="tiny models (a CPU smoke test)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda_graphs = device.type == "cuda" and not args.no_cuda_graphs
    lengths = source_lengths(args.src, args.spm, args.spm_vocab)[:args.limit]
    header, records = provenance(), []
    for arch in args.archs.split(","):
        config = arch_config(arch, args.tiny)
        model, data = random_model(config, device), batches(lengths, args.batch, config.data.src_vocab_size, device)
        for beam in map(int, args.beams.split(",")):
            options = config.decode.override(beam=beam, n_best=1, batch_size=args.batch, cuda_graphs=cuda_graphs)
            timed_search(model, data, options, device, True)  # captures every shape the passes below meet
            with host_timers() as totals:
                host_pass = timed_search(model, data, options, device, True)
            profiled = device_profile(lambda: timed_search(model, data, options, device, True), device, args.top)
            record = {"arch": arch, "beam": beam, "batch": args.batch, "cuda_graphs": cuda_graphs,
                      "pass_seconds": host_pass["seconds"], "steps": host_pass["steps"],
                      "host_parts": {name: {"seconds": round(seconds, 4), "calls": calls}
                                     for name, (seconds, calls) in sorted(totals.items())},
                      **profiled, **header}
            records.append(record)
            print(f"{arch:9} beam {beam:2}: pass {host_pass['seconds']:.3f} s, device busy "
                  f"{profiled['busy_fraction']:.0%} of a profiled pass; host "
                  + ", ".join(f"{name} {seconds:.3f} s" for name, (seconds, _) in sorted(totals.items())))
            if args.out:
                write_json(args.out, records)
    return records


if __name__ == "__main__":
    main()
