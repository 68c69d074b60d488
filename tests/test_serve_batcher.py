"""The dynamic batcher alone, with a scripted search: which sentences share a batch, in what order.

The search here records each batch it is given and answers every line with its upper-cased text,
so every expected batch below can be derived by hand from the rules in nmt/serve/batcher.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from nmt.serve.batcher import Batcher, QueueFull, Stopped


class ScriptedSearch:
    def __init__(self, fail_on: str = ""):
        self.batches: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, lines, options):
        self.batches.append(list(lines))
        if self.fail_on in lines:
            raise RuntimeError(f"search failed on {self.fail_on}")
        return [f"{line.upper()}/{options}" for line in lines]


def results(job, timeout: float = 10):
    return job.future.result(timeout)


def test_jobs_queued_together_share_one_batch_and_get_their_own_results():
    search = ScriptedSearch()
    batcher = Batcher(search, max_batch=4, max_wait=30.0, max_queue=100)
    jobs = [batcher.submit([f"s{i}"], "beam5") for i in range(3)] + [batcher.submit(["s3"], "beam5")]
    batcher.start()  # four sentences fill the batch: no waiting for the 30 seconds
    assert [results(job) for job in jobs] == [["S0/beam5"], ["S1/beam5"], ["S2/beam5"], ["S3/beam5"]]
    assert search.batches == [["s0", "s1", "s2", "s3"]]
    batcher.stop()


def test_a_large_request_shares_each_batch_with_the_requests_behind_it():
    search = ScriptedSearch()
    batcher = Batcher(search, max_batch=2, max_wait=0.0, max_queue=100)
    big = batcher.submit(["b0", "b1", "b2", "b3", "b4"], "o")
    small = batcher.submit(["s0"], "o")
    batcher.start()
    assert results(small) == ["S0/o"] and results(big) == ["B0/o", "B1/o", "B2/o", "B3/o", "B4/o"]
    # one place each in turn: big's first, small's only; then big alone
    assert search.batches == [["b0", "s0"], ["b1", "b2"], ["b3", "b4"]]
    batcher.stop()


def test_a_request_arriving_while_a_large_one_is_searched_joins_its_next_batch():
    search, started = ScriptedSearch(), threading.Event()
    release = threading.Event()

    def slow_search(lines, options):
        started.set()
        release.wait(10)
        return search(lines, options)

    batcher = Batcher(slow_search, max_batch=3, max_wait=0.0, max_queue=100)
    big = batcher.submit([f"b{i}" for i in range(7)], "o")
    batcher.start()
    started.wait(10)  # the first batch, b0 b1 b2, is being searched
    small = batcher.submit(["s0"], "o")
    release.set()
    assert results(small) == ["S0/o"] and len(results(big)) == 7
    assert search.batches == [["b0", "b1", "b2"], ["b3", "b4", "s0"], ["b5", "b6"]]
    batcher.stop()


def test_only_equal_options_share_a_batch_and_a_sampled_job_shares_none():
    search = ScriptedSearch()
    batcher = Batcher(search, max_batch=8, max_wait=0.0, max_queue=100)
    jobs = [batcher.submit(["a0"], "beam5"), batcher.submit(["c0"], "beam2"), batcher.submit(["a1"], "beam5"),
            batcher.submit(["d0"], "beam5", alone=True), batcher.submit(["a2"], "beam5")]
    batcher.start()
    for job in jobs:
        results(job)
    assert search.batches == [["a0", "a1", "a2"], ["c0"], ["d0"]]
    batcher.stop()


def test_the_oldest_job_waits_up_to_max_wait_for_others_to_join_it():
    search = ScriptedSearch()
    batcher = Batcher(search, max_batch=4, max_wait=2.0, max_queue=100)
    batcher.start()
    first = batcher.submit(["s0"], "o")
    time.sleep(0.1)  # well within the 2 seconds of waiting
    second = batcher.submit(["s1"], "o")
    assert results(first) == ["S0/o"] and results(second) == ["S1/o"]
    assert search.batches == [["s0", "s1"]]
    batcher.stop()


def test_a_full_queue_refuses_a_job_and_a_stopped_batcher_refuses_all():
    batcher = Batcher(ScriptedSearch(), max_batch=2, max_wait=0.0, max_queue=3)
    batcher.submit(["s0", "s1"], "o")
    with pytest.raises(QueueFull):
        batcher.submit(["s2", "s3"], "o")  # 2 + 2 > 3
    batcher.submit(["s2"], "o")  # 3 fit
    assert batcher.queued == 3
    batcher.start()
    batcher.stop()
    with pytest.raises(Stopped):
        batcher.submit(["s4"], "o")


def test_stop_searches_everything_queued_before_the_worker_ends():
    search = ScriptedSearch()
    batcher = Batcher(search, max_batch=2, max_wait=30.0, max_queue=100)
    jobs = [batcher.submit([f"s{i}"], "o") for i in range(5)]
    batcher.start()
    batcher.stop(timeout=10)  # the last one would wait 30 s for company: stopping does not wait
    assert all(job.future.done() for job in jobs) and sum(map(len, search.batches)) == 5


def test_a_cancelled_job_is_never_searched():
    search = ScriptedSearch()
    batcher = Batcher(search, max_batch=4, max_wait=0.0, max_queue=100)
    gone, kept = batcher.submit(["g0", "g1"], "o"), batcher.submit(["k0"], "o")
    batcher.cancel(gone)
    assert batcher.queued == 1
    batcher.start()
    assert results(kept) == ["K0/o"] and search.batches == [["k0"]] and gone.future.cancelled()
    batcher.stop()


def test_a_failing_search_reaches_every_caller_of_its_batch_and_the_worker_goes_on():
    search = ScriptedSearch(fail_on="bad")
    batcher = Batcher(search, max_batch=2, max_wait=0.0, max_queue=100)
    first, second = batcher.submit(["bad"], "o"), batcher.submit(["s1", "s2"], "o")
    batcher.start()
    for job in (first, second):
        with pytest.raises(RuntimeError, match="search failed on bad"):
            results(job)
    later = batcher.submit(["s3"], "o")
    assert results(later) == ["S3/o"]
    assert batcher.queued == 0  # second's text left over from the failed batch was dropped with it
    batcher.stop()


def test_batches_are_observed_with_their_sentences_and_requests():
    seen = []
    batcher = Batcher(ScriptedSearch(), max_batch=3, max_wait=0.0, max_queue=100,
                      on_batch=lambda sentences, jobs, seconds: seen.append((sentences, jobs)))
    jobs = [batcher.submit(["a", "b"], "o"), batcher.submit(["c", "d"], "o")]
    batcher.start()
    for job in jobs:
        results(job)
    batcher.stop()
    assert seen == [(3, 2), (1, 1)]


def test_submitting_from_many_threads_loses_no_result():
    batcher = Batcher(ScriptedSearch(), max_batch=8, max_wait=0.001, max_queue=10_000)
    batcher.start()
    answers: dict[int, list] = {}

    def client(i: int) -> None:
        answers[i] = results(batcher.submit([f"t{i}", f"u{i}"], "o"))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batcher.stop()
    assert answers == {i: [f"T{i}/o", f"U{i}/o"] for i in range(40)}
