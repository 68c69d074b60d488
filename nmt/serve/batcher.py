"""Dynamic batching: the sentences of requests that arrive together are searched as one batch.

One worker thread per model does all of that model's searching, so the event loop only queues
work and awaits futures, and PyTorch never runs two searches of one model at once. The worker:

  1. waits for a job (one request's texts and decoding options);
  2. lets the oldest waiting job wait up to `max_wait` seconds for others with the same options to
     fill a batch of `max_batch` sentences (no waiting once the batch is full, and none when that
     job has already waited that long, e.g. behind the previous batch);
  3. takes up to `max_batch` sentences from the jobs with the oldest job's options, dealt out one
     per job in turn (queue order), so every waiting request gets a place in the batch before a
     large one gets a second; a job with sentences left over goes to the back of the queue. A
     large request is thus searched in pieces, beside the requests that arrive meanwhile, and
     cannot starve them;
  4. searches the batch in one call and hands each job its results; a job whose last sentence
     is done gets its future resolved.

Only jobs with equal `DecodeOptions` can share a batch: search takes one set of options for all
its sentences. A sampled job never shares one (`alone`): its draws would depend on which other
sentences happened to be in the batch, and a seeded request should get the same samples each time.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional, Sequence


class QueueFull(Exception):
    """The model's queue cannot take the job's sentences now."""


class Stopped(Exception):
    """The batcher is shutting down and takes no new job."""


@dataclass(eq=False)
class Job:
    texts: Sequence[str]
    options: Any  # what `search` gets for this job's sentences
    key: Hashable  # jobs with equal keys may share a batch
    arrived: float  # time.monotonic()
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    taken: int = 0  # texts[:taken] are in a batch (searched or being searched)
    done: int = 0  # of them, how many have results
    results: list = field(default_factory=list)

    @property
    def left(self) -> int:
        return len(self.texts) - self.taken


BatchObserver = Callable[[int, int, float], None]  # (sentences, jobs, seconds) of each searched batch


class Batcher:
    def __init__(self, search: Callable[[list[str], Any], list], *, max_batch: int, max_wait: float,
                 max_queue: int, on_batch: Optional[BatchObserver] = None, name: str = "model"):
        self.search, self.max_batch, self.max_wait, self.max_queue = search, max_batch, max_wait, max_queue
        self.on_batch = on_batch or (lambda sentences, jobs, seconds: None)
        self._pending: list[Job] = []  # jobs with texts not yet taken, in the order they are served
        self._queued = 0  # texts not yet taken, over all pending jobs
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def queued(self) -> int:
        return self._queued

    def submit(self, texts: Sequence[str], options: Any, *, alone: bool = False) -> Job:
        """Queue one request's texts; its future gets one result per text, in order."""
        job = Job(texts, options, object() if alone else options, time.monotonic(), results=[None] * len(texts))
        with self._changed:
            if self._stopping:
                raise Stopped()
            if self._queued + len(texts) > self.max_queue:
                raise QueueFull()
            self._pending.append(job)
            self._queued += len(texts)
            self._changed.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Drop what the job has not had searched yet (its caller has gone or timed out)."""
        self._drop(job)
        job.future.cancel()

    def _drop(self, job: Job) -> None:
        with self._changed:
            if job in self._pending:
                self._pending.remove(job)
                self._queued -= job.left
            job.taken = len(job.texts)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Search everything queued, then end the worker."""
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._search(batch)

    def _next_batch(self) -> Optional[list[tuple[Job, range]]]:
        with self._changed:
            while True:
                if not self._pending:
                    if self._stopping:
                        return None
                    self._changed.wait()
                    continue
                head = self._pending[0]
                wait = head.arrived + self.max_wait - time.monotonic()
                if wait > 0 and not self._stopping and self._waiting_like(head.key) < self.max_batch:
                    self._changed.wait(wait)  # then look again: more may have come, or the head gone
                    continue
                return self._take(head.key)

    def _waiting_like(self, key: Hashable) -> int:
        return sum(job.left for job in self._pending if job.key == key)

    def _take(self, key: Hashable) -> list[tuple[Job, range]]:
        """Up to max_batch texts of the jobs with `key`, shared out one at a time in queue order;
        a job left with texts goes to the back of the queue (step 3 above)."""
        like = [job for job in self._pending if job.key == key]
        shares, room = [0] * len(like), self.max_batch
        while room and any(share < job.left for share, job in zip(shares, like)):
            for i, job in enumerate(like):
                if room and shares[i] < job.left:
                    shares[i] += 1
                    room -= 1
        batch = []
        for job, count in zip(like, shares):
            if count:
                batch.append((job, range(job.taken, job.taken + count)))
                job.taken += count
        taken = {id(job) for job, _ in batch}
        self._pending = ([job for job in self._pending if id(job) not in taken] +
                         [job for job, _ in batch if job.left])
        self._queued -= self.max_batch - room
        return batch

    def _search(self, batch: list[tuple[Job, range]]) -> None:
        lines = [job.texts[i] for job, span in batch for i in span]
        started = time.monotonic()
        try:
            results = self.search(lines, batch[0][0].options)
        except Exception as error:  # a bug: every caller in the batch gets it, the worker goes on
            for job, _ in batch:
                self._drop(job)
                _resolve(job.future, error=error)
            return
        self.on_batch(len(lines), len(batch), time.monotonic() - started)
        found = iter(results)
        for job, span in batch:
            for i in span:
                job.results[i] = next(found)
            job.done += len(span)
            if job.done == len(job.texts):
                _resolve(job.future, result=job.results)


def _resolve(future: concurrent.futures.Future, *, result: Any = None, error: Optional[BaseException] = None) -> None:
    """Set a future's outcome unless its caller cancelled it meanwhile (it is then no one's)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass
