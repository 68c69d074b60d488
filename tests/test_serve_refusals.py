"""What `nmt serve` refuses, through real server processes: every limit, malformed requests,
clients that misbehave, a full queue, a timeout, API keys, and a server that must not start.

Each refusal is a status and a JSON object whose "error" names the problem ("limit" and "allowed"
for a limit, "field" for a bad value); a server that cannot start prints one line and exits 2.
docs/bad-inputs.md has one row per test here.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time

import pytest

from tests.serve_support import (LIMITS, LONG_TEXT, Server, case_id, free_port, limited_server, raw_connection,
                                 read_reply, request_head, run_serve)


@pytest.fixture(scope="module")
def server(trained_run):
    started = limited_server(trained_run)
    yield started
    assert started.stop() == 0, started.output()


# --- limits: the status, and a JSON error naming the limit ----------------------------------------

LIMIT_CASES = {
    "max_texts": ({"text": ["wa0"] * 5}, 413),
    "max_chars": ({"text": ["wa0", "w" * 201]}, 413),
    "max_beam": ({"text": "wa0", "beam": 7}, 422),
    "max_beam (n_best widens the beam)": ({"text": "wa0", "n_best": 7}, 422),
    "max_samples": ({"text": "wa0", "sample": True, "n_samples": 5}, 422),
    "max_body_bytes": ({"text": "wa0"}, 413),  # padded below with white space past the limit
}


@pytest.mark.parametrize("case", LIMIT_CASES, ids=case_id)
def test_every_limit_answers_its_status_and_names_itself(server, case):
    payload, status = LIMIT_CASES[case]
    limit = case.split()[0]
    body = json.dumps(payload).encode()
    if limit == "max_body_bytes":
        body = body[:-1] + b" " * LIMITS["max_body_bytes"] + b"}"  # valid JSON, too large
    reply = server.post(body)
    answer = reply.json()
    assert reply.status == status, answer
    assert answer["limit"] == limit and answer["allowed"] == LIMITS[limit]
    assert f"--{limit.replace('_', '-')}" in answer["error"]


def test_a_chunked_body_without_a_length_is_counted_as_it_comes(server):
    connection = raw_connection(server.port)
    chunk = b" " * 1000
    head = (b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    try:
        connection.sendall(head + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n")
        reply = read_reply(connection)
    finally:
        connection.close()
    assert reply.status == 413 and reply.json()["limit"] == "max_body_bytes"


# --- malformed requests: 4xx with a JSON error, never a 500 ---------------------------------------

MALFORMED = {
    "not JSON": (b'{"text": "wa0"', 400, "not valid JSON"),
    "NaN": (b'{"text": "wa0", "temperature": NaN}', 400, "NaN is not a JSON number"),
    "invalid UTF-8": (b'{"text": "wa0 \xff\xfe"}', 400, "not UTF-8"),
    "a lone surrogate": (b'{"text": "wa0 \\ud800"}', 422, "lone surrogate"),
    "a list body": (b'["wa0"]', 422, "must be a JSON object"),
    "no text": (b'{"beam": 2}', 422, "needs 'text'"),
    "a number as text": (b'{"text": 5}', 422, "a string or a list of strings"),
    "a number in the list": (b'{"text": ["wa0", 3]}', 422, "a string or a list of strings"),
    "an empty text": (b'{"text": ""}', 422, "text 0 is empty"),
    "white space only": (b'{"text": ["wa0", " \\t "]}', 422, "text 1 is empty"),
    "an empty list": (b'{"text": []}', 422, "empty list"),
    "a string beam": (b'{"text": "wa0", "beam": "5"}', 422, "'beam' must be a whole number"),
    "a fractional beam": (b'{"text": "wa0", "beam": 2.5}', 422, "'beam' must be a whole number"),
    "a boolean beam": (b'{"text": "wa0", "beam": true}', 422, "'beam' must be a whole number"),
    "a number for sample": (b'{"text": "wa0", "sample": 1}', 422, "'sample' must be true or false"),
    "a misspelt key": (b'{"text": "wa0", "bem": 2}', 422, "did you mean 'beam'"),
    "n_best above beam": (b'{"text": "wa0", "beam": 2, "n_best": 3}', 422, "n_best 3 cannot exceed beam 2"),
    "a bad top_p": (b'{"text": "wa0", "sample": true, "top_p": 0}', 422, "top_p must be in (0, 1]"),
    "an unknown model": (b'{"text": "wa0", "model": "nope"}', 404, "this server has toy, copy"),
    "a number as model": (b'{"text": "wa0", "model": 1}', 422, "'model' must be a string"),
    "a seed beyond 64 bits": (b'{"text": "wa0", "seed": 99999999999999999999}', 422, "'seed' must be a whole"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=case_id)
def test_malformed_requests_get_a_clear_json_error(server, case):
    body, status, words = MALFORMED[case]
    reply = server.post(body)
    assert reply.status == status, reply.body
    assert words in reply.json()["error"]


def test_a_body_that_is_not_declared_json_is_refused(server):
    reply = server.request("POST", "/translate", b'{"text": "wa0"}', {"content-type": "text/plain"})
    assert reply.status == 415 and "application/json" in reply.json()["error"]


@pytest.mark.parametrize("method, path, status", [("GET", "/translate", 405), ("GET", "/translations", 404)],
                         ids=["wrong-method", "unknown-path"])
def test_a_path_or_method_the_api_lacks_gets_a_json_error(server, method, path, status):
    reply = server.request(method, path)
    assert reply.status == status and f"{method} {path}; the API is POST /translate" in reply.json()["error"]


# --- clients that misbehave -----------------------------------------------------------------------


def test_a_client_that_disconnects_mid_body_is_counted_and_harms_no_one(server):
    before = server.metric("nmt_serve_requests_total", route="/translate", status="disconnected")
    connection = raw_connection(server.port)
    connection.sendall(request_head(1000) + b'{"text": "wa')
    time.sleep(0.2)
    connection.close()
    server.wait_until(lambda: server.metric("nmt_serve_requests_total", route="/translate",
                                            status="disconnected") == before + 1, what="the disconnect counted")
    assert server.post({"text": "wa0"}).status == 200


def test_a_client_that_leaves_before_its_answer_has_its_sentences_dropped(server):
    before = server.metric("nmt_serve_requests_total", route="/translate", status="disconnected")
    body = json.dumps({"text": [" ".join(["wa0 wb1"] * 25)] * 4, "beam": 6}).encode()
    connection = raw_connection(server.port)
    connection.sendall(request_head(len(body)) + body)
    server.wait_until(lambda: server.metric("nmt_serve_requests_in_progress") == 1, what="the request accepted")
    connection.close()
    server.wait_until(lambda: server.metric("nmt_serve_requests_total", route="/translate",
                                            status="disconnected") == before + 1, what="the leave noticed")
    server.wait_until(lambda: server.metric("nmt_serve_queue_sentences", model="toy") == 0, what="the queue empty")
    assert server.post({"text": "wa0"}).status == 200


def test_a_slow_client_gets_408_and_others_are_served_meanwhile(server):
    connection = raw_connection(server.port)
    connection.sendall(request_head(100) + b'{"text": ')  # and then nothing, for longer than --body-timeout
    started = time.monotonic()
    assert server.post({"text": "wa0"}, timeout=10).status == 200
    assert time.monotonic() - started < 2  # answered within the slow client's --body-timeout of 2 s
    reply = read_reply(connection)
    connection.close()
    assert reply.status == 408 and reply.json()["limit"] == "body_timeout"


def test_attention_from_a_model_without_attention_is_refused_before_searching(server):
    reply = server.post({"text": "wa0", "attention": True})
    assert reply.status == 422 and reply.json()["field"] == "attention"
    assert "model toy has no attention (model.attention: none)" in reply.json()["error"]


# --- a busy server: a full queue, a request that takes too long ----------------------------------


@pytest.fixture(scope="module")
def busy_server(trained_run):
    """One sentence per batch, room for 4 waiting, answers within 1 s. Each sentence's search is made
    to take 0.6 s or more, so four take 2.4 s or more on any machine."""
    started = Server("-m", f"toy={trained_run}", "--max-batch", "1", "--max-queue", "4", "--max-texts", "4",
                     "--request-timeout", "1", "--retry-after", "3", "--threads", "1", "--device", "cpu",
                     search_delay=0.6)
    yield started
    assert started.stop() == 0, started.output()


def wait_until_idle(server: Server, searched_before: float, count: int, quiet: float = 2.0) -> None:
    """Until `count` more sentences were searched, the queue is empty, and no search has ended for
    `quiet` seconds, longer than one takes (0.6 s and more): a search that started runs to its end,
    and one may have started after the `count` that a test expects (the first ended early)."""
    server.wait_until(lambda: server.metric("nmt_serve_sentences_total") >= searched_before + count, timeout=120,
                      what=f"{count} sentences searched")
    server.wait_until(lambda: server.metric("nmt_serve_queue_sentences") == 0, what="the queue empty")
    quiet_since, searched = time.monotonic(), server.metric("nmt_serve_sentences_total")
    while time.monotonic() - quiet_since < quiet:
        time.sleep(0.1)
        now = server.metric("nmt_serve_sentences_total")
        if now != searched:
            quiet_since, searched = time.monotonic(), now


def test_a_full_queue_answers_503_with_retry_after(busy_server):
    server, searched = busy_server, busy_server.metric("nmt_serve_sentences_total")
    replies = {}
    first = threading.Thread(target=lambda: replies.update(first=server.post({"text": [LONG_TEXT] * 4}, timeout=60)))
    first.start()
    server.wait_until(lambda: server.metric("nmt_serve_queue_sentences") == 3, what="three sentences queued")
    reply = server.post({"text": ["wa0", "wb1"]})  # 3 + 2 > 4
    first.join(60)
    assert reply.status == 503 and reply.headers["retry-after"] == "3"
    assert reply.json()["limit"] == "max_queue" and reply.json()["allowed"] == 4
    assert "queue of model toy is full" in reply.json()["error"]
    assert replies["first"].status == 503  # and the first ran out of time: 4 long texts take more than 1 s
    wait_until_idle(server, searched, 1)  # its sentences not yet searched were dropped: only one was


def test_a_request_slower_than_the_timeout_answers_503_at_its_deadline(busy_server):
    server, searched = busy_server, busy_server.metric("nmt_serve_sentences_total")
    started = time.monotonic()
    reply = server.post({"text": [LONG_TEXT] * 4}, timeout=60)
    waited = time.monotonic() - started
    assert reply.status == 503 and reply.headers["retry-after"] == "3"
    assert reply.json()["limit"] == "request_timeout" and reply.json()["allowed"] == 1
    assert "--request-timeout" in reply.json()["error"]
    assert waited < 10  # at the deadline, not after the four searches
    wait_until_idle(server, searched, 1)
    assert server.post({"text": "wa0"}).status == 200


def test_translate_requests_beyond_max_connections_get_a_json_503_and_the_rest_still_answers(trained_run):
    server = Server("-m", f"toy={trained_run}", "--max-connections", "1", "--max-batch", "1", "--retry-after", "3",
                    "--threads", "1", "--device", "cpu", search_delay=0.5)  # the four take 2 s or more
    try:
        replies = {}
        slow = threading.Thread(target=lambda: replies.update(slow=server.post({"text": [LONG_TEXT] * 4}, timeout=60)))
        slow.start()
        server.wait_until(lambda: server.metric("nmt_serve_requests_in_progress") == 1, what="one request in progress")
        reply = server.post({"text": "wa0"})
        assert reply.status == 503 and reply.headers["retry-after"] == "3"
        assert reply.json()["limit"] == "max_connections" and reply.json()["allowed"] == 1
        assert "--max-connections" in reply.json()["error"]
        assert server.get("/health").status == 200 and server.get("/models").status == 200  # never refused for load
        slow.join(60)
        assert replies["slow"].status == 200
        assert server.post({"text": "wa0"}).status == 200  # the place is free again
    finally:
        assert server.stop() == 0, server.output()


# --- API keys -----------------------------------------------------------------------------------

ENV_KEY, FILE_KEY = "env-key-0123456789abcdef", "file-key-fedcba9876543210"


@pytest.fixture(scope="module")
def keyed_server(trained_run, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text(f"# who has which key\n{FILE_KEY}\n\n", encoding="utf-8")
    started = Server("-m", f"toy={trained_run}", "--api-keys-file", keys, "--cors-origin", "https://app.example",
                     "--threads", "1", "--device", "cpu", env={"NMT_SERVE_API_KEYS": ENV_KEY})
    yield started
    assert started.stop() == 0, started.output()


KEY_CASES = {
    "no key": ({}, 401),
    "a wrong key": ({"authorization": "Bearer " + ENV_KEY[:-1] + "x"}, 401),
    "a key's prefix": ({"x-api-key": ENV_KEY[:16]}, 401),
    "an empty bearer": ({"authorization": "Bearer "}, 401),
    "the environment's key as a bearer token": ({"authorization": "Bearer " + ENV_KEY}, 200),
    "the file's key as X-API-Key": ({"x-api-key": FILE_KEY}, 200),
}


@pytest.mark.parametrize("case", KEY_CASES, ids=case_id)
def test_the_api_needs_a_valid_key(keyed_server, case):
    headers, status = KEY_CASES[case]
    reply = keyed_server.post({"text": "wa0"}, headers=headers)
    assert reply.status == status, reply.body
    if status == 401:
        assert "a valid API key is needed" in reply.json()["error"] and reply.headers["www-authenticate"] == "Bearer"
        assert keyed_server.get("/models", headers=headers).status == 401
        assert keyed_server.get("/metrics", headers=headers).status == 401
    assert keyed_server.get("/health").status == 200 and keyed_server.get("/").status == 200  # no key: no secret


def test_only_the_origins_named_may_call_across_origins(keyed_server):
    def preflight(origin):
        return keyed_server.request("OPTIONS", "/translate", headers={
            "origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, authorization"})

    allowed, other = preflight("https://app.example"), preflight("https://elsewhere.example")
    assert allowed.status == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert other.status == 400 and "access-control-allow-origin" not in other.headers


# --- a server that must not start: one line, exit 2, nothing listening ---------------------------


def held_port():
    """A port something else listens on."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


START_FAILURES = {
    "a checkpoint that does not exist": (lambda run, tmp: ["-m", tmp / "nowhere"], {},
                                         "checkpoint {tmp}/nowhere not found"),
    "a corrupt checkpoint": (lambda run, tmp: ["-m", corrupt_copy(run, tmp)], {},
                             "{tmp}/corrupt/model.safetensors is corrupt or not this checkpoint's"),
    "a port in use": (lambda run, tmp: ["-m", run, "--port", "HELD"], {}, "cannot listen on 127.0.0.1:"),
    "a port out of range": (lambda run, tmp: ["-m", run, "--port", "70000"], {}, "--port must be from 1 to 65535"),
    "no batch at all": (lambda run, tmp: ["-m", run, "--max-batch", "0"], {}, "--max-batch must be at least 1"),
    "two models of one name": (lambda run, tmp: ["-m", f"a={run}", "-m", f"a={run}"], {}, "two models are named 'a'"),
    "a bad model name": (lambda run, tmp: ["-m", f"a b={run}"], {}, "model name 'a b' must be 1 to 64 letters"),
    "an API key file that does not exist": (lambda run, tmp: ["-m", run, "--api-keys-file", tmp / "keys"], {},
                                            "cannot read the API key file"),
    "a short API key": (lambda run, tmp: ["-m", run], {"NMT_SERVE_API_KEYS": "secret"}, "too easy to guess"),
}


def corrupt_copy(run, tmp):
    copy = tmp / "corrupt"
    if not copy.exists():
        shutil.copytree(run / "best", copy)
        (copy / "model.safetensors").write_bytes(b"not safetensors at all")
    return copy


@pytest.mark.parametrize("case", START_FAILURES, ids=case_id)
def test_a_server_that_cannot_start_says_why_in_one_line(trained_run, tmp_path, case):
    make_args, env, words = START_FAILURES[case]
    holder = held_port()
    port = str(holder.getsockname()[1])
    try:
        args = [port if a == "HELD" else a for a in make_args(trained_run, tmp_path)]
        if "--port" not in args:
            args += ["--port", str(free_port())]
        result = run_serve(*args, env=env)
    finally:
        holder.close()
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and words.format(tmp=tmp_path) in lines[0], lines[0]
