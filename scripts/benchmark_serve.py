"""`nmt serve` under load: sentences/s and p50/p99 latency against concurrent clients, with and
without dynamic batching.

For each mode (batching: `--max-batch B`; off: `--max-batch 1`) the script starts a real server
process on a free loopback port, then for each client count N runs N asyncio clients
(httpx.AsyncClient) for `--seconds`: each sends one sentence per request, waits for the answer and
sends the next (a closed loop, as interactive users do), cycling through `--input` from its own
offset. A request's latency runs from just before it is sent to its answer; sentences/s is the
answers divided by the time from the first request to the last answer. The server's /metrics give
the mean sentences per search batch and the mean time a request spent inside the server (from its
arrival to its answer): the rest of a client's mean latency is HTTP on both sides and the client,
whose own event loop's lag (how late a 10 ms sleep wakes up, p99) is recorded too. Writes one JSON record with `nmt.provenance.provenance()`.

    python scripts/benchmark_serve.py --checkpoint runs/quickstart/run --input runs/quickstart/corpus/test.en \\
        --clients 1,4,16,64 --threads 2 --out benchmarks/results/serve-quickstart-cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nmt.data.corpus import read_lines  # noqa: E402
from nmt.files import write_atomically  # noqa: E402
from nmt.provenance import provenance  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`python -m nmt serve` on a free port, waited for, stopped with SIGTERM."""

    def __init__(self, flags: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, "-m", "nmt", "serve", *flags, "--port", str(self.port)],
                                        cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONPATH": os.pathsep.join(  # this tree's nmt first
                                            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"nmt serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        sys.exit(f"nmt serve did not start in 300 s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def totals(self) -> dict:
        """Running sums from /metrics: sentences and batches searched, /translate's answers and the
        seconds they took inside the server (arrival to answer, without the client's side)."""
        text = httpx.get(self.url + "/metrics", timeout=30).text

        def total(pattern: str) -> float:
            return sum(float(value) for value in re.findall(pattern + r" (\S+)$", text, re.M))

        return {"sentences": total(r"^nmt_serve_batch_sentences_sum\{[^}]*\}"),
                "batches": total(r"^nmt_serve_batch_sentences_count\{[^}]*\}"),
                "answers": total(r'^nmt_serve_request_seconds_count\{route="/translate"\}'),
                "answer_seconds": total(r'^nmt_serve_request_seconds_sum\{route="/translate"\}')}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, nearest rank (p99 of 100 values is the 99th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def load(url: str, lines: list[str], clients: int, seconds: float, payload: dict) -> dict:
    """`clients` closed-loop clients for `seconds`; their latencies and the wall time."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def one_client(index: int) -> None:
            position = index * max(1, len(lines) // clients)
            while time.perf_counter() < deadline:
                text = lines[position % len(lines)]
                position += 1
                sent = time.perf_counter()
                reply = await client.post("/translate", json={"text": text, **payload})
                if reply.status_code == 200:
                    latencies.append(time.perf_counter() - sent)
                else:
                    failures[str(reply.status_code)] = failures.get(str(reply.status_code), 0) + 1

        async def ticker() -> None:  # how late this process's own event loop wakes up: the client's lag
            while time.perf_counter() < deadline:
                asked = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - asked - 0.01)

        lags: list[float] = []
        await asyncio.gather(ticker(), *(one_client(i) for i in range(clients)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "wall": wall, "failures": failures, "lags": lags}


def measure(server: ServerProcess, lines: list[str], clients: int, seconds: float, payload: dict) -> dict:
    before = server.totals()
    found = asyncio.run(load(server.url, lines, clients, seconds, payload))
    after = server.totals()
    change = {key: after[key] - before[key] for key in after}
    latencies = found["latencies"]
    return {"clients": clients, "requests": len(latencies), "failed": found["failures"],
            "seconds": round(found["wall"], 2), "sentences_per_s": round(len(latencies) / found["wall"], 2),
            "p50_ms": round(1000 * percentile(latencies, 50), 1), "p99_ms": round(1000 * percentile(latencies, 99), 1),
            "mean_batch_sentences": round(change["sentences"] / change["batches"], 2) if change["batches"] else None,
            # the mean time a request spent inside the server; the rest of mean_ms is HTTP and the client
            "mean_ms": round(1000 * sum(latencies) / len(latencies), 1),
            "client_loop_lag_p99_ms": round(1000 * percentile(found["lags"], 99), 1),
            "server_mean_ms": (round(1000 * change["answer_seconds"] / change["answers"], 1)
                               if change["answers"] else None)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="Checkpoint or run folder to serve.")
    parser.add_argument("--input", type=Path, required=True, help="Source sentences, one per line.")
    parser.add_argument("--clients", default="1,4,16,64", help="Client counts, comma-separated.")
    parser.add_argument("--seconds", type=float, default=8.0, help="Load time per client count and mode.")
    parser.add_argument("--max-batch", type=int, default=64, help="The batching mode's --max-batch.")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="The batching mode's --max-wait-ms.")
    parser.add_argument("--beam", type=int, help="Beam of every request [the checkpoint's decode.beam].")
    parser.add_argument("--threads", type=int, help="The server's --threads [torch's default].")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--modes", default="batching,off", help="batching, off or both (comma-separated).")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    lines = [line for line in read_lines(args.input) if line][:5000]
    payload = {} if args.beam is None else {"beam": args.beam}
    common = ["-m", f"model={args.checkpoint}", "--device", args.device, "--request-timeout", "600",
              "--max-queue", str(max(1024, 4 * max(clients))), "--max-connections", str(max(512, 2 * max(clients)))]
    common += ["--threads", str(args.threads)] if args.threads else []
    modes = {"batching": ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)],
             "off": ["--max-batch", "1", "--max-wait-ms", "0"]}
    results = []
    for mode in args.modes.split(","):
        server = ServerProcess(common + modes[mode])
        try:
            measure(server, lines, 1, min(2.0, args.seconds), payload)  # warm-up: first calls allocate
            for count in clients:
                result = {"mode": mode, "max_batch": 1 if mode == "off" else args.max_batch,
                          **measure(server, lines, count, args.seconds, payload)}
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            server.stop()
    record = {"what": "nmt serve under concurrent single-sentence clients, batching on and off", **provenance(),
              "checkpoint": args.checkpoint, "input": str(args.input), "input_sentences": len(lines),
              "beam": args.beam or "the checkpoint's", "threads": args.threads, "seconds_per_point": args.seconds,
              "max_wait_ms": args.max_wait_ms,
              # other work on the machine slows every point: the 1, 5 and 15 minute load at the end
              "load_average": [round(x, 2) for x in os.getloadavg()], "results": results}
    by_mode = {(r["mode"], r["clients"]): r for r in results}
    record["batching_speedup"] = {str(c): round(by_mode["batching", c]["sentences_per_s"] /
                                                by_mode["off", c]["sentences_per_s"], 2)
                                  for c in clients if ("batching", c) in by_mode and ("off", c) in by_mode}
    write_atomically(args.out, json.dumps(record, indent=2) + "\n")
    print(json.dumps({"batching_speedup": record["batching_speedup"]}))
    return record


if __name__ == "__main__":
    main()
