"""The next batch's encoder, run by a worker thread on a CUDA stream of its own while this batch
is searched (`search.search_batches`).

An encoder over a batch of packed sentences is one cuDNN call that launches its kernels time
step by time step: for newstest2014's longest batch of 128 sentences it holds the host for about
10 ms (measured on the H200's host, whether the device was idle or busy), against tens of
microseconds for a search step replayed as a graph. Run between two batches, it leaves the device
with nothing to do for most of that time. A second thread can launch it meanwhile, because torch
releases the GIL inside its operators, and a second stream lets its kernels run beside the
search's. What that needs:
  - the side stream starts after what the caller's stream has queued when the encoder is asked
    for (the batch's copy to the device), a wait on the device, not on the host;
  - the state's tensors are marked as used by the caller's stream (`record_stream`), so that the
    allocator does not hand their memory to the next encoder while the search still reads them;
  - the search waits for the encoder's event before its first step, again on the device;
  - the worker enters the caller's autocast and no-grad settings itself (both are per thread).
The model must not change while the worker runs: `search_batches` gives it the autocast twin,
refreshed once before the first batch (nmt/decode/graphs.py).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from nmt.decode.graphs import tensors


class Encoded:
    """An encoder's state, ready once the caller's stream on `device` has waited for `event` (`ready`)."""

    def __init__(self, state, event: torch.cuda.Event, device: torch.device):
        self.state, self.event, self.device = state, event, device

    def ready(self):
        torch.cuda.current_stream(self.device).wait_event(self.event)  # the model's device, whichever is current
        return self.state


class EncoderAhead:
    """One worker thread and one side stream for a run of batches on one CUDA device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nmt-encoder")

    def submit(self, model, src: torch.Tensor, src_lens: torch.Tensor) -> "Future[Encoded]":
        caller = torch.cuda.current_stream(self.device)
        asked = torch.cuda.Event()
        asked.record(caller)  # after the batch's copy to the device
        autocast = (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
        return self.pool.submit(self._encode, model, src, src_lens, caller, asked, autocast)

    def _encode(self, model, src, src_lens, caller: torch.cuda.Stream, asked: torch.cuda.Event, autocast) -> Encoded:
        enabled, dtype = autocast
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype, enabled=enabled), torch.cuda.stream(self.stream):
            self.stream.wait_event(asked)
            state = model.encode(src, src_lens)
            for tensor in tensors(state):
                tensor.record_stream(caller)
            done = torch.cuda.Event()
            done.record(self.stream)
        return Encoded(state, done, self.device)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
