"""`nmt serve` through real server processes: each endpoint, batching, shutdown, the safe defaults.

One server (two names for the toy model, an attention model, small limits) answers most of the
module; the answers are checked against the Python API, which the server must only wrap. What the
server refuses is tested in test_serve_refusals.py, the batcher alone in test_serve_batcher.py,
the page in a browser in test_serve_browser.py.
"""

from __future__ import annotations

import json
import math
import re
import signal
import socket
import threading
import time

import pytest

from tests.conftest import tiny_config
from tests.serve_support import LIMITS, LONG_TEXT, Server, limited_server, raw_connection, request_head


@pytest.fixture(scope="session")
def attention_run(toy_workspace, tmp_path_factory):
    """A tiny run of an attention model (general attention) on the toy corpus."""
    from nmt.train.start import train

    root = tmp_path_factory.mktemp("attention")
    for name in ("corpus", "prepared"):
        (root / name).symlink_to(toy_workspace / name)
    train(tiny_config(root, model={"attention": "general"}), stream=open("/dev/null", "w"))
    return root / "run"


@pytest.fixture(scope="module")
def server(trained_run, attention_run):
    started = limited_server(trained_run, "-m", f"att={attention_run}")
    yield started
    assert started.stop() == 0, started.output()


@pytest.fixture(scope="module")
def translator(trained_run):
    from nmt import Translator

    return Translator.load(trained_run, "cpu")


# --- the endpoints ------------------------------------------------------------------------------


def test_health_needs_nothing_and_names_the_models(server):
    reply = server.get("/health")
    assert reply.status == 200 and reply.json() == {"status": "ok", "models": ["toy", "copy", "att"]}


def test_models_describe_languages_vocabularies_decode_config_and_checkpoint(server, trained_run, translator):
    answer = server.get("/models").json()
    toy, copy, att = answer["models"]
    assert (toy["name"], copy["name"]) == ("toy", "copy")
    assert toy["checkpoint"] == copy["checkpoint"] == str((trained_run / "best").resolve())
    assert (toy["source_language"], toy["target_language"]) == ("src", "tgt")
    assert toy["source_vocab_size"] == translator.src_tokenizer.vocab_size
    assert toy["target_vocab_size"] == translator.tgt_tokenizer.vocab_size
    assert toy["decode"]["beam"] == translator.config.decode.beam == 3
    assert toy["model"]["layers"] == 2 and toy["device"] == "cpu"
    assert toy["model"]["attention"] == "none" and att["model"]["attention"] == "general"
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
                   'nmt_serve_requests_in_progress 0.0', 'nmt_serve_event_loop_lag_seconds_bucket{le="0.001"}'):
        assert series in text, series
    ticks = re.search(r"^nmt_serve_event_loop_lag_seconds_count (\S+)$", text, re.M)
    assert ticks and float(ticks.group(1)) > 0  # the watcher has been running since start-up


def test_the_page_is_served_with_a_strict_policy_and_uses_only_the_public_api(server):
    page = server.get("/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert b'<script src="/page.js">' in page.body and b'id="attention"' in page.body
    script = server.get("/page.js").body.decode("utf-8")
    assert set(re.findall(r'call\("([^"]+)"', script)) == {"/models", "/translate"}
    assert "innerHTML" not in script  # answers go into the page as text only


def test_attention_weights_come_with_each_hypothesis_when_asked_for(server):
    """Forced decoding of every hypothesis (nmt/serve/models.py: attention_for): one row per target
    piece and the end, one column per source piece, each row a distribution."""
    reply = server.post({"text": ["wa0 wb1", "wc2"], "model": "att", "attention": True, "n_best": 2, "beam": 2})
    assert reply.status == 200
    for translation in reply.json()["translations"]:
        for hypothesis in translation["hypotheses"]:
            attention = hypothesis["attention"]
            assert attention["target_pieces"] == hypothesis["tokens"] + ["</s>"]
            assert len(attention["source_pieces"]) >= len(translation["source"].split())
            assert len(attention["weights"]) == len(attention["target_pieces"])
            for row in attention["weights"]:
                assert len(row) == len(attention["source_pieces"]) and abs(sum(row) - 1) < 1e-3
    plain = server.post({"text": "wa0 wb1", "model": "att", "attention": False}).json()
    assert "attention" not in plain["translations"][0]["hypotheses"][0]


# --- safe defaults ------------------------------------------------------------------------------


def test_the_server_listens_on_the_loopback_only_by_default(server):
    assert f"on http://127.0.0.1:{server.port}/" in server.output()
    listening = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
    addresses = {address for _, address, *_ in listening if address.endswith(f":{server.port:04X}")}
    assert addresses == {f"0100007F:{server.port:04X}"}  # 127.0.0.1, in /proc's byte order


def test_cross_origin_calls_are_not_allowed_by_default(server):
    preflight = server.request("OPTIONS", "/translate", headers={
        "origin": "https://elsewhere.example", "access-control-request-method": "POST",
        "access-control-request-headers": "content-type"})
    assert preflight.status in (400, 405) and "access-control-allow-origin" not in preflight.headers
    reply = server.post({"text": "wa0"}, headers={"origin": "https://elsewhere.example"})
    assert reply.status == 200 and "access-control-allow-origin" not in reply.headers


# --- batching -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batching_server(trained_run):
    """Batches of up to 8 sentences; a lone sentence waits up to 1 s for others; each searched sentence
    takes 0.1 s or more (a batch of 8: 0.8 s), so that a large request is slow on any machine."""
    started = Server("-m", f"toy={trained_run}", "--max-batch", "8", "--max-wait-ms", "1000", "--threads", "1",
                     "--device", "cpu", search_delay=0.1)
    yield started
    assert started.stop() == 0, started.output()


def concurrently(calls) -> list:
    """Run the calls each in its own thread, released together; their results in order."""
    results, barrier = [None] * len(calls), threading.Barrier(len(calls))

    def run(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_concurrent_requests_are_merged_into_one_batch_with_the_answers_of_one_by_one(batching_server, translator):
    server, lines = batching_server, ["wa0 wb1", "wc2", "wd3 we4 wf5", "wg6 wh7", "wi8", "wj9 wk10"]
    batches = server.metric("nmt_serve_batch_requests_count")
    replies = concurrently([lambda line=line: server.post({"text": line}) for line in lines])
    assert [reply.status for reply in replies] == [200] * len(lines)
    # the six requests met within the 1 s wait: fewer batches than requests, all six searched
    assert server.metric("nmt_serve_batch_requests_count") - batches < len(lines)
    assert server.metric("nmt_serve_batch_requests_sum") >= len(lines)
    for line, reply in zip(lines, replies):
        [hypothesis] = reply.json()["translations"][0]["hypotheses"]
        [alone] = translator.translate([line])[0]
        assert hypothesis["text"] == alone.text and hypothesis["score"] == pytest.approx(alone.score, abs=1e-4)


def test_a_large_request_does_not_starve_a_small_one(batching_server):
    server = batching_server
    big = {"text": [LONG_TEXT] * 16}  # batches of 8, each 0.8 s or more
    replies = {}
    thread = threading.Thread(target=lambda: replies.update(big=server.post(big, timeout=300)))
    thread.start()
    server.wait_until(lambda: server.metric("nmt_serve_requests_in_progress") == 1, what="the big request queued")
    small = server.post({"text": "wa0 wb1"}, timeout=300)
    big_still_running = thread.is_alive()
    thread.join(300)
    assert small.status == 200 and replies["big"].status == 200
    assert big_still_running, "the small request waited for the whole of the big one"
    assert len(replies["big"].json()["translations"]) == 16


# --- stopping -----------------------------------------------------------------------------------


def test_sigterm_answers_every_accepted_request_then_exits_0(trained_run):
    server = Server("-m", f"toy={trained_run}", "--max-batch", "1", "--threads", "1", "--device", "cpu",
                    search_delay=0.5)
    requests = [{"text": [LONG_TEXT, f"wa0 wb{i}"]} for i in range(1, 4)]  # one sentence at a time: 3 s or more
    replies = [None] * len(requests)

    def client(i):
        replies[i] = server.post(requests[i], timeout=300)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    server.wait_until(lambda: server.metric("nmt_serve_requests_in_progress") == len(requests),
                      what="all requests accepted")
    server.process.send_signal(signal.SIGTERM)
    refused = False  # the listening socket closes at once: no new request is accepted
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
        except ConnectionRefusedError:
            refused = True
            break
        time.sleep(0.05)
    for thread in threads:
        thread.join(300)
    assert refused
    assert [reply.status for reply in replies] == [200] * len(requests)
    assert all(len(reply.json()["translations"]) == 2 for reply in replies)
    assert server.stop() == 0
    assert "stopped by SIGTERM: every accepted request was answered" in server.output()


# --- the load benchmark ---------------------------------------------------------------------------


def test_the_load_benchmark_reports_every_mode_and_client_count(trained_run, toy_workspace, tmp_path):
    from scripts.benchmark_serve import main

    out = tmp_path / "serve.json"
    record = main(["--checkpoint", str(trained_run), "--input", str(toy_workspace / "corpus" / "test.src"),
                   "--clients", "1,3", "--seconds", "0.5", "--threads", "1", "--device", "cpu", "--out", str(out)])
    assert json.loads(out.read_text()) == record and record["commit"]
    assert [(r["mode"], r["clients"]) for r in record["results"]] == [("batching", 1), ("batching", 3), ("off", 1),
                                                                      ("off", 3)]
    for result in record["results"]:
        assert result["failed"] == {} and result["requests"] > 0 and result["sentences_per_s"] > 0
        assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert [r["mean_batch_sentences"] for r in record["results"] if r["mode"] == "off"] == [1.0, 1.0]
    assert set(record["batching_speedup"]) == {"1", "3"}
    assert all(r["client_processes"] == 1 and r["server_loop_lag_mean_ms"] is not None for r in record["results"])


def test_the_load_benchmark_spreads_clients_over_processes_and_merges_them(server):
    from scripts.benchmark_serve import default_client_processes, run_clients

    # 3 clients over 2 processes: 2 in one, 1 in the other
    found = run_clients(f"http://127.0.0.1:{server.port}", ["wa0", "wb1 wc2"], 3, 2, 0.5, {})
    assert found["failures"] == {} and len(found["latencies"]) >= 3 and found["wall"] >= 0.5
    assert 0 < found["client_cpu_busiest"] < 2
    assert default_client_processes(1) == 1 and default_client_processes(64) <= 8


def test_the_readme_names_every_request_key_and_every_limit_flag():
    from pathlib import Path

    from nmt.serve.limits import REQUEST_KEYS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Serving translations", 1)[1].split("\n## ", 1)[0]
    assert [key for key in REQUEST_KEYS if f'"{key}"' not in section] == []
    flags = [f"--{key.replace('_', '-')}" for key in (*LIMITS, "max_queue", "request_timeout", "body_timeout",
                                                      "max_connections", "retry_after", "max_batch", "max_wait_ms")]
    assert [flag for flag in flags if flag not in section] == []
    assert "docs/serve-page.png" in section


def test_the_server_decides_whether_search_steps_are_captured(trained_run):
    """--cuda-graphs (the default) / --no-cuda-graphs is the server's: every request's options
    carry it, whatever the checkpoint's decode.cuda_graphs (on a CPU search ignores it)."""
    from nmt.serve.limits import ServeSettings
    from nmt.serve.metrics import Metrics
    from nmt.serve.models import load_models

    assert ServeSettings().cuda_graphs is True
    for flag in (True, False):
        settings = ServeSettings(device="cpu", cuda_graphs=flag)
        [model] = load_models([("toy", trained_run)], settings, Metrics(settings.max_batch)).values()
        assert model.options({"beam": 2}, settings).cuda_graphs is flag
