"""A real `python -m nmt serve` process on a free loopback port, and plain HTTP to talk to it.

The tests speak HTTP with the standard library (http.client, and raw sockets for what a client
library would refuse to send: invalid UTF-8, a body cut short, a body that trickles in).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 180  # seconds: importing torch and loading a model on a busy 2-core machine

# The small limits of the servers most tests talk to, so that a test can reach each one cheaply.
LIMITS = {"max_texts": 4, "max_chars": 200, "max_body_bytes": 4000, "max_beam": 6, "max_samples": 4}
# A long text of the toy corpus's words. How long the tiny model takes to search it depends on the
# machine, so a test that needs a busy server slows the search down itself (Server's search_delay).
LONG_TEXT = " ".join(["wa0 wb1 wc2 wd3 we4"] * 25)

# `python -m nmt ARGS` with every searched batch first waiting DELAY seconds per sentence: a test of
# queues, timeouts and shutdown needs searches that are slow on any machine (a fast CI machine had
# searched four long texts within a 1 s timeout). Only the test process patches it; nmt has no hook.
SLOWED_SEARCH = """
import runpy, sys, time
from nmt.serve.batcher import Batcher
delay, search = float(sys.argv.pop(1)), Batcher._search
def slowed(self, batch):
    time.sleep(delay * sum(len(span) for _, span in batch))
    search(self, batch)
Batcher._search = slowed
sys.argv[0] = "nmt"
runpy.run_module("nmt", run_name="__main__", alter_sys=True)
"""


def case_id(case: str) -> str:
    """A parametrized case's name as a test id without spaces: "a wrong key" -> a-wrong-key."""
    return re.sub(r"[^A-Za-z0-9_]+", "-", case).strip("-")


def limited_server(trained_run: Path, *extra) -> "Server":
    """The toy model under two names (toy: the run folder, copy: its best/), with LIMITS."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in LIMITS.items()]
    return Server("-m", f"toy={trained_run}", "-m", f"copy={trained_run / 'best'}", *flags, "--body-timeout", "2",
                  "--max-wait-ms", "5", "--threads", "1", "--device", "cpu", *extra)


def run_serve(*args, env: Optional[dict] = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """`nmt serve ARGS` run to its end (for servers that must not start)."""
    return subprocess.run([sys.executable, "-m", "nmt", "serve", *map(str, args)], cwd=ROOT, env=nmt_env(env),
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nmt_env(extra: Optional[dict] = None) -> dict:
    """This environment, without API keys but those a test gives (a server must not need one by accident)."""
    env = {key: value for key, value in os.environ.items() if key != "NMT_SERVE_API_KEYS"}
    return {**env, "PYTHONPATH": str(ROOT), **(extra or {})}


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


class Server:
    """`nmt serve ARGS --port P` started and waited for (GET /health); `stop()` sends SIGTERM.

    search_delay: seconds each sentence waits before its batch is searched (SLOWED_SEARCH), for
    tests that need the server busy for a known while."""

    def __init__(self, *args, env: Optional[dict] = None, search_delay: float = 0.0):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()  # not a pipe: a full pipe would block the server
        launch = ["-c", SLOWED_SEARCH, str(search_delay)] if search_delay else ["-m", "nmt"]
        command = [sys.executable, *launch, "serve", *map(str, args), "--port", str(self.port)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=nmt_env(env), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nmt serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if self.get("/health").status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"nmt serve did not answer /health in {START_TIMEOUT} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def request(self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None,
                timeout: float = 120) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def get(self, path: str, headers: Optional[dict] = None) -> Reply:
        return self.request("GET", path, headers=headers, timeout=30)

    def post(self, payload, headers: Optional[dict] = None, timeout: float = 120) -> Reply:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        return self.request("POST", "/translate", body, {"content-type": "application/json", **(headers or {})},
                            timeout)

    def metric(self, name: str, **labels) -> float:
        """One sample of /metrics (0 when absent): `metric("nmt_serve_requests_total", status="200")`."""
        text = self.get("/metrics").body.decode("utf-8")
        total = 0.0
        for line in text.splitlines():
            match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
            if match and match.group(1) == name:
                found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
                if all(found.get(k) == str(v) for k, v in labels.items()):
                    total += float(match.group(3))
        return total

    def wait_until(self, condition, timeout: float = 60, what: str = "the condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen in {timeout} s")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def raw_connection(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=60)


def read_reply(connection: socket.socket) -> Reply:
    """One HTTP/1.1 answer read off a raw socket (the server closes or sends Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return Reply(int(lines[0].split()[1]), headers, body)


def request_head(length: int, path: str = "/translate") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode("ascii")
