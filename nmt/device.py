"""Where the model runs: device choice and bf16 autocast."""

from __future__ import annotations

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


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CUDA when asked for; a no-op context on the CPU.

    Its cache (one bf16 copy of each weight while the context is open) is on: a context that
    opens and closes inside a captured CUDA graph recasts the weights at every replay.
    """
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


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
