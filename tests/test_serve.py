"""`nmt serve` through a real server process: each endpoint, every limit, malformed requests.

One server (two names for the toy model, small limits) answers the whole module; the answers are
checked against the Python API, which the server must only wrap.
"""

from __future__ import annotations

import json
import math
import re
import time

import pytest

from tests.serve_support import Server, raw_connection, read_reply, request_head

LIMITS = {"max_texts": 4, "max_chars": 200, "max_body_bytes": 4000, "max_beam": 6, "max_samples": 4}


@pytest.fixture(scope="module")
def server(trained_run):
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in LIMITS.items()]
    started = Server("-m", f"toy={trained_run}", "-m", f"copy={trained_run / 'best'}", *flags, "--body-timeout", "2",
                     "--max-wait-ms", "5", "--threads", "1", "--device", "cpu")
    yield started
    assert started.stop() == 0, started.output()


@pytest.fixture(scope="module")
def translator(trained_run):
    from nmt import Translator

    return Translator.load(trained_run, "cpu")


# --- the endpoints ------------------------------------------------------------------------------


def test_health_needs_nothing_and_names_the_models(server):
    reply = server.get("/health")
    assert reply.status == 200 and reply.json() == {"status": "ok", "models": ["toy", "copy"]}


def test_models_describe_languages_vocabularies_decode_config_and_checkpoint(server, trained_run, translator):
    answer = server.get("/models").json()
    toy, copy = answer["models"]
    assert (toy["name"], copy["name"]) == ("toy", "copy")
    assert toy["checkpoint"] == copy["checkpoint"] == str((trained_run / "best").resolve())
    assert (toy["source_language"], toy["target_language"]) == ("src", "tgt")
    assert toy["source_vocab_size"] == translator.src_tokenizer.vocab_size
    assert toy["target_vocab_size"] == translator.tgt_tokenizer.vocab_size
    assert toy["decode"]["beam"] == translator.config.decode.beam == 3
    assert toy["model"]["layers"] == 2 and toy["device"] == "cpu"
    assert {key: answer["limits"][key] for key in LIMITS} == LIMITS and answer["api_key_required"] is False


def test_a_text_is_translated_as_the_python_api_translates_it(server, translator):
    answer = server.post({"text": "wa0 wb1"}).json()
    assert answer["model"] == "toy" and len(answer["translations"]) == 1
    [hypothesis] = answer["translations"][0]["hypotheses"]
    [expected] = translator.translate(["wa0 wb1"])[0]
    assert hypothesis["text"] == expected.text
    assert hypothesis["score"] == pytest.approx(expected.score, abs=1e-5)
    assert hypothesis["tokens"] == [translator.tgt_tokenizer.processor.id_to_piece(t) for t in expected.tokens]
    # one log-probability per piece, then EOS's: they add up to the translation's
    assert len(hypothesis["token_scores"]) == len(hypothesis["tokens"]) + 1
    assert math.fsum(hypothesis["token_scores"]) == pytest.approx(hypothesis["log_prob"], abs=1e-4)


def test_a_list_with_beam_and_n_best_gives_each_text_its_ranked_hypotheses(server, translator):
    lines = ["wa0 wb1 wc2", "wd3", "we4 wf5"]
    answer = server.post({"text": lines, "beam": 5, "n_best": 3, "model": "copy"}).json()
    assert answer["model"] == "copy" and answer["options"]["beam"] == 5 and answer["options"]["n_best"] == 3
    expected = translator.translate(lines, translator.options(beam=5, n_best=3))
    assert [t["source"] for t in answer["translations"]] == lines
    for found, wanted in zip(answer["translations"], expected):
        assert [h["text"] for h in found["hypotheses"]] == [w.text for w in wanted]
        scores = [h["score"] for h in found["hypotheses"]]
        assert scores == sorted(scores, reverse=True) and len(scores) == 3


def test_seeded_sampling_repeats_itself(server):
    request = {"text": ["wa0 wb1", "wc2"], "sample": True, "n_samples": 4, "n_best": 2, "seed": 7,
               "temperature": 1.5, "top_k": 10, "top_p": 0.9}
    first, second = server.post(request).json(), server.post(request).json()
    assert first == second and first["options"]["seed"] == 7
    assert all(len(t["hypotheses"]) == 2 for t in first["translations"])


def test_metrics_are_prometheus_text_with_requests_latency_batches_and_queue(server):
    server.post({"text": "wa0"})
    reply = server.get("/metrics")
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = reply.body.decode("utf-8")
    for series in ('nmt_serve_requests_total{route="/translate",status="200"}',
                   'nmt_serve_request_seconds_bucket{le="0.005",route="/translate"}',
                   'nmt_serve_sentences_total{model="toy"}', 'nmt_serve_batch_sentences_bucket{le="1.0",model="toy"}',
                   'nmt_serve_batch_requests_count{model="toy"}', 'nmt_serve_queue_sentences{model="toy"} 0.0',
                   'nmt_serve_requests_in_progress 0.0'):
        assert series in text, series


def test_the_page_is_served_with_a_strict_policy_and_uses_only_the_public_api(server):
    page = server.get("/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert b'<script src="/page.js">' in page.body and b"Attention heatmaps are not shown" in page.body
    script = server.get("/page.js").body.decode("utf-8")
    assert set(re.findall(r'call\("([^"]+)"', script)) == {"/models", "/translate"}
    assert "innerHTML" not in script  # answers go into the page as text only


# --- limits: the status, and a JSON error naming the limit ----------------------------------------

LIMIT_CASES = {
    "max_texts": ({"text": ["wa0"] * 5}, 413),
    "max_chars": ({"text": ["wa0", "w" * 201]}, 413),
    "max_beam": ({"text": "wa0", "beam": 7}, 422),
    "max_beam (n_best widens the beam)": ({"text": "wa0", "n_best": 7}, 422),
    "max_samples": ({"text": "wa0", "sample": True, "n_samples": 5}, 422),
    "max_body_bytes": ({"text": "wa0"}, 413),  # padded below with white space past the limit
}


@pytest.mark.parametrize("case", LIMIT_CASES)
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


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_requests_get_a_clear_json_error(server, case):
    body, status, words = MALFORMED[case]
    reply = server.post(body)
    assert reply.status == status, reply.body
    assert words in reply.json()["error"]


def test_a_body_that_is_not_declared_json_is_refused(server):
    reply = server.request("POST", "/translate", b'{"text": "wa0"}', {"content-type": "text/plain"})
    assert reply.status == 415 and "application/json" in reply.json()["error"]


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
