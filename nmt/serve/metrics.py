"""The server's Prometheus metrics, on a registry of its own (not the process-wide default, so two
apps in one process, as in tests, do not count into each other).

What an operator needs to size the server: how many requests and sentences, how long they take,
how full the batches are (sentences and requests per batch: above 1 request means batching
merged callers), how many sentences are waiting, and how late the event loop runs (when it is
late, every request's reading, parsing and answering is).
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _powers_of_two(largest: int) -> tuple[float, ...]:
    buckets, size = [], 1
    while size < largest:
        buckets.append(float(size))
        size *= 2
    return (*buckets, float(largest))


class Metrics:
    # The text format every Prometheus reads (2.x does not know 1.0.0); the names need no escaping.
    content_type = CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self, max_batch: int):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("nmt_serve_requests", "HTTP requests answered, by route and status "
                                "(status 'disconnected': the client left before its answer)",
                                ["route", "status"], registry=registry)
        self.latency = Histogram("nmt_serve_request_seconds", "Time from a request's arrival to its answer",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.in_progress = Gauge("nmt_serve_requests_in_progress", "Translate requests accepted and not yet "
                                 "answered", registry=registry)
        self.sentences = Counter("nmt_serve_sentences", "Sentences translated", ["model"], registry=registry)
        self.batch_sentences = Histogram("nmt_serve_batch_sentences", "Sentences per search batch", ["model"],
                                         buckets=_powers_of_two(max_batch), registry=registry)
        self.batch_requests = Histogram("nmt_serve_batch_requests", "Requests whose sentences shared a search "
                                        "batch", ["model"], buckets=_powers_of_two(max_batch), registry=registry)
        self.batch_seconds = Histogram("nmt_serve_batch_seconds", "Search time per batch", ["model"],
                                       buckets=LATENCY_BUCKETS, registry=registry)
        self.loop_lag = Histogram("nmt_serve_event_loop_lag_seconds", "How late the server's event loop wakes "
                                  "from a 10 ms sleep: the time it spends on other callbacks or waiting for the "
                                  "GIL, which every request's HTTP work waits behind too", buckets=LAG_BUCKETS,
                                  registry=registry)
        self.queued = Gauge("nmt_serve_queue_sentences", "Sentences waiting for a batch", ["model"],
                            registry=registry)

    def watch_model(self, model: str, queued: Callable[[], int]) -> Callable[[int, int, float], None]:
        """Report a model's queue length when scraped; returns the observer of its batches."""
        self.queued.labels(model=model).set_function(queued)

        def observe(sentences: int, jobs: int, seconds: float) -> None:
            self.sentences.labels(model=model).inc(sentences)
            self.batch_sentences.labels(model=model).observe(sentences)
            self.batch_requests.labels(model=model).observe(jobs)
            self.batch_seconds.labels(model=model).observe(seconds)

        return observe

    def answered(self, route: str, status: int | str, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)
