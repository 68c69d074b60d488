"""Where the model runs: device choice, CPU threads and bf16 autocast."""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import torch

from nmt.errors import NmtError


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes the first CUDA GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NmtError(f"unknown device '{name}': use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NmtError(f"device '{name}' was asked for but no CUDA GPU is available: use device auto or cpu")
    return device


def read_cpu_times() -> Optional[tuple[float, float]]:
    """(idle, total) CPU time of the whole machine from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat") as stat:
            fields = [float(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return idle, sum(fields[:8])  # user nice system idle iowait irq softirq steal (not guest: in user)


def idle_cores(sample_seconds: float = 0.1, read: Callable[[], Optional[tuple[float, float]]] = read_cpu_times) -> int:
    """How many of this process's cores are idle now (at least 1): the machine's idle share over a
    short sample, times its CPUs, capped at the cores this process may use.

    Training's default thread count (train.threads: 0). Measured on a 2-core machine (the
    quickstart, benchmarks/results/quickstart-cpu*.json): alone, 2 threads train 1.6x faster than
    1; beside two processes keeping both cores busy, 1 thread is 2.9x faster than 2, whose threads wait
    for each other. Where /proc/stat is missing: every core.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    before = read()
    if before is None:
        return cores
    time.sleep(sample_seconds)
    after = read()
    if after is None or after[1] <= before[1]:
        return cores
    idle_share = (after[0] - before[0]) / (after[1] - before[1])
    machine_cpus = os.cpu_count() or cores
    return max(1, min(cores, round(idle_share * machine_cpus)))


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked for; a no-op context on the CPU.

    Its cache (one bf16 copy of each weight while the context is open) is on: a context that
    opens and closes inside a captured CUDA graph recasts the weights at every replay.
    """
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def device_to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of a CUDA tensor in page-locked host memory, queued like a kernel: the host must
    wait for the stream (an event) before it reads the copy. A CPU tensor is returned as it is."""
    if tensor.device.type != "cuda":
        return tensor
    return torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True).copy_(tensor, non_blocking=True)


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A copy of a CPU tensor on `device` that does not make the host wait for the device.

    A plain `.to("cuda")` of pageable memory synchronises the stream; from page-locked memory
    with non_blocking the copy is queued like a kernel. Pinned tensors (DataLoader batches) are
    used as they are; others are pinned first (torch's caching host allocator keeps the buffer
    alive until the copy is done).
    """
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return (tensor if tensor.is_pinned() else tensor.pin_memory()).to(device, non_blocking=True)
