"""`nmt serve` under load: sentences/s and p50/p99 latency against concurrent clients, with and
without dynamic batching.

For each mode (batching: `--max-batch B`; off: `--max-batch 1`) the script starts a real server
process on a free loopback port, then for each client count N runs N closed-loop clients for
`--seconds`: each has a connection of its own (an httpx.AsyncClient), sends one sentence per
request, waits for the answer and sends the next (as interactive users do), cycling through
`--input` from its own offset. The clients are spread over `--client-processes` processes (N/P
each, started together, latencies merged), so that the client's own Python does not set the
figures. A request's latency runs from just before it is sent to its answer; sentences/s is the
answers divided by the time from the common start to the last answer. The server's /metrics give
the mean sentences per search batch and its mean search time, the mean time a request spent
inside the server (from its arrival to its answer: the rest of a client's mean latency is HTTP on
both sides and the client) and how late the server's event loop ran; each result also says how
late the clients' own event loops woke (a 10 ms sleep, p99) and the busiest client process's CPU
time over the wall time (near 1: the client is the limit). Writes one JSON record with
`nmt.provenance.provenance()`.

    python scripts/benchmark_serve.py --checkpoint runs/quickstart/run --input runs/quickstart/corpus/test.en \\
        --clients 1,4,16,64 --threads 1 --out benchmarks/results/serve/serve-quickstart-cpu-after.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
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
                "answer_seconds": total(r'^nmt_serve_request_seconds_sum\{route="/translate"\}'),
                "batch_seconds": total(r"^nmt_serve_batch_seconds_sum\{[^}]*\}"),
                "loop_lag_seconds": total(r"^nmt_serve_event_loop_lag_seconds_sum"),
                "loop_ticks": total(r"^nmt_serve_event_loop_lag_seconds_count")}

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


async def load(url: str, lines: list[str], first: int, count: int, clients: int, start, seconds: float,
               payload: dict) -> dict:
    """Clients first..first+count-1 of `clients`, each a closed loop on a connection of its own, for
    `seconds` from the time.monotonic() that `start()` gives once every client process is ready."""
    latencies: list[float] = []
    failures: dict[str, int] = {}
    lags: list[float] = []
    # One AsyncClient (one connection) per simulated user, as real users have: a pool shared by
    # N clients costs O(N) Python per request in httpcore's pool bookkeeping, which at 64 clients
    # was most of this process's time (py-spy, benchmarks/README.md).
    sessions = [httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=1))
                for _ in range(count)]

    async def one_client(index: int, client: httpx.AsyncClient) -> None:
        position = index * max(1, len(lines) // clients)
        while time.monotonic() < deadline:
            text = lines[position % len(lines)]
            position += 1
            sent = time.monotonic()
            reply = await client.post("/translate", json={"text": text, **payload})
            if reply.status_code == 200:
                latencies.append(time.monotonic() - sent)
            else:
                failures[str(reply.status_code)] = failures.get(str(reply.status_code), 0) + 1

    async def ticker() -> None:  # how late this process's own event loop wakes up: the client's lag
        while time.monotonic() < deadline:
            asked = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - asked - 0.01)

    started = start()  # blocks until every process has made its clients (64 take seconds to make)
    deadline = started + seconds
    cpu = time.process_time()
    try:
        await asyncio.gather(ticker(), *(one_client(first + i, c) for i, c in enumerate(sessions)))
    finally:
        for client in sessions:
            await client.aclose()
    return {"latencies": latencies, "failures": failures, "lags": lags, "finished": time.monotonic(),
            "cpu_seconds": time.process_time() - cpu}


def client_process(url: str, lines: list[str], first: int, count: int, clients: int, seconds: float,
                   payload: dict, ready, go, results) -> None:
    def start() -> float:
        ready.put(first)
        return go.get()

    results.put(asyncio.run(load(url, lines, first, count, clients, start, seconds, payload)))


def run_clients(url: str, lines: list[str], clients: int, processes: int, seconds: float, payload: dict) -> dict:
    """`clients` closed-loop clients spread over `processes` processes (N/P each), run together;
    their latencies and lags merged, the wall time from the common start to the last answer."""
    processes = min(processes, clients)
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    context = multiprocessing.get_context("fork")  # the children need nothing but this module's functions
    ready, go, results = context.Queue(), context.Queue(), context.Queue()
    workers = [context.Process(target=client_process, daemon=True, args=(
        url, lines, sum(shares[:i]), share, clients, seconds, payload, ready, go, results))
               for i, share in enumerate(shares)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=300)
    started = time.monotonic()
    for _ in workers:
        go.put(started)
    found = [results.get(timeout=seconds + 900) for _ in workers]  # before join: a full pipe would block the child
    for worker in workers:
        worker.join()
    failures: dict[str, int] = {}
    for part in found:
        for status, n in part["failures"].items():
            failures[status] = failures.get(status, 0) + n
    wall = max(part["finished"] for part in found) - started
    return {"latencies": [x for part in found for x in part["latencies"]], "failures": failures,
            "lags": [x for part in found for x in part["lags"]], "wall": wall,
            # the busiest client process's CPU time over the wall time: near 1.0, the client is the limit
            "client_cpu_busiest": max(part["cpu_seconds"] for part in found) / wall}


def default_client_processes(clients: int) -> int:
    """Enough processes that none drives more than 8 clients, leaving 4 cores to the server (its
    event loop and its search threads) and other work; one on a small machine."""
    return max(1, min(math.ceil(clients / 8), (os.cpu_count() or 1) - 4))


def measure(server: ServerProcess, lines: list[str], clients: int, processes: int, seconds: float,
            payload: dict) -> dict:
    before = server.totals()
    found = run_clients(server.url, lines, clients, processes, seconds, payload)
    after = server.totals()
    change = {key: after[key] - before[key] for key in after}
    latencies = found["latencies"]
    return {"clients": clients, "client_processes": min(processes, clients), "requests": len(latencies),
            "failed": found["failures"], "seconds": round(found["wall"], 2),
            "sentences_per_s": round(len(latencies) / found["wall"], 2),
            "p50_ms": round(1000 * percentile(latencies, 50), 1), "p99_ms": round(1000 * percentile(latencies, 99), 1),
            "mean_batch_sentences": round(change["sentences"] / change["batches"], 2) if change["batches"] else None,
            # the mean time a request spent inside the server; the rest of mean_ms is HTTP and the client
            "mean_ms": round(1000 * sum(latencies) / len(latencies), 1),
            "client_loop_lag_p99_ms": round(1000 * percentile(found["lags"], 99), 1),
            "client_cpu_busiest": round(found["client_cpu_busiest"], 2),
            "server_mean_ms": (round(1000 * change["answer_seconds"] / change["answers"], 1)
                               if change["answers"] else None),
            "server_batch_mean_ms": (round(1000 * change["batch_seconds"] / change["batches"], 1)
                                     if change["batches"] else None),
            "server_loop_lag_mean_ms": (round(1000 * change["loop_lag_seconds"] / change["loop_ticks"], 2)
                                        if change["loop_ticks"] else None)}


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
    parser.add_argument("--client-processes", type=int,
                        help="Processes the clients are spread over [enough for at most 8 clients each, at most "
                             "the machine's cores less 4, at least 1].")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                        help="The server's --cuda-graphs / --no-cuda-graphs (search steps replayed as CUDA graphs on "
                             "a GPU; its default).")
    parser.add_argument("--modes", default="batching,off", help="batching, off or both (comma-separated).")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    lines = [line for line in read_lines(args.input) if line][:5000]
    payload = {} if args.beam is None else {"beam": args.beam}
    common = ["-m", f"model={args.checkpoint}", "--device", args.device, "--request-timeout", "600",
              "--max-queue", str(max(1024, 4 * max(clients))), "--max-connections", str(max(512, 2 * max(clients)))]
    common += ["--threads", str(args.threads)] if args.threads else []
    common += ["--cuda-graphs" if args.cuda_graphs else "--no-cuda-graphs"]
    modes = {"batching": ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)],
             "off": ["--max-batch", "1", "--max-wait-ms", "0"]}
    results = []
    for mode in args.modes.split(","):
        server = ServerProcess(common + modes[mode])
        try:
            measure(server, lines, 1, 1, min(2.0, args.seconds), payload)  # warm-up: first calls allocate
            for count in clients:
                processes = args.client_processes or default_client_processes(count)
                result = {"mode": mode, "max_batch": 1 if mode == "off" else args.max_batch,
                          **measure(server, lines, count, processes, args.seconds, payload)}
                results.append(result)
                print(json.dumps(result), flush=True)
        finally:
            server.stop()
    record = {"what": "nmt serve under concurrent single-sentence clients, batching on and off", **provenance(),
              "checkpoint": args.checkpoint, "input": str(args.input), "input_sentences": len(lines),
              "beam": args.beam or "the checkpoint's", "threads": args.threads, "cuda_graphs": args.cuda_graphs, "seconds_per_point": args.seconds,
              "client_processes": args.client_processes or "default_client_processes (each result says)",
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
    # Stopped with SIGTERM (a driver's `timeout`), unwind, so that `finally` stops the server
    # rather than leaving it beside whatever runs next; the client processes are daemons.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
