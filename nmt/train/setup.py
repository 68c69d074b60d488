"""Putting a model where it trains (one device, the paper's layer pipeline, or torchrun data
parallelism) and building its optimizer."""

from __future__ import annotations

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.overrides import TorchFunctionMode

from nmt.config import TrainConfig
from nmt.device import pick_device
from nmt.errors import ConfigError
from nmt.train.distributed import World


def check_model_fits(task, t: TrainConfig, device: torch.device) -> None:
    """Refuse, before anything is allocated, a model whose weights and gradients (and Adam's two
    moments) alone exceed the memory free on `device`: allocating it would fail, or on Linux let
    the kernel kill the process later. The model is built on the meta device to count it."""
    if t.devices:  # the layer pipeline spreads the model over several devices
        return
    with torch.device("meta"), _NoNormalInit():
        count = sum(p.numel() for p in task.build_model().parameters())
    need = count * 4 * (4 if t.optimizer == "adam" else 2)
    free = free_memory(device)
    if free is not None and need > free:
        raise ConfigError(f"the model has {count:,} parameters: with their gradients{' and Adam moments' if t.optimizer == 'adam' else ''} "
                          f"that is {need / 2**30:.1f} GiB, but {device} has {free / 2**30:.1f} GiB free; lower "
                          f"model.hidden, model.embed, model.layers or the vocabulary sizes")


class _NoNormalInit(TorchFunctionMode):
    """Leaves out normal_ (nn.Embedding's default init) while a model is built on the meta device
    to be counted: the first normal_ on that device imports torch's Python meta kernels, about
    800 modules and 2 s of a run's start, and a count needs no values."""

    SKIPPED = (torch.Tensor.normal_, torch.nn.init.normal_)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def free_memory(device: torch.device):
    """Bytes free on `device` (the CPU: MemAvailable of /proc/meminfo), or None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def place(model: torch.nn.Module, t: TrainConfig, world: World, device: torch.device):
    """Move `model` to its device(s). Returns (what the training step calls, the device batches go to):
    the model itself, or its DistributedDataParallel wrapper under torchrun."""
    if t.devices:  # the paper's layout: layers (and softmax slices) over several devices
        for name in (*t.devices, *t.softmax_devices):
            pick_device(name)
        model.place(list(t.devices), list(t.softmax_devices), t.pipeline_chunk)
        device = torch.device(t.devices[0])  # where batches and the embeddings go
    else:
        model.to(device)
    if world.size == 1:
        return model, device
    if t.devices or t.cuda_graphs:
        raise ConfigError("torchrun data parallelism cannot be combined with train.devices or "
                          "train.cuda_graphs yet: drop them from the config")
    if t.static_shapes and t.batch_size % world.size:
        raise ConfigError(f"train.batch_size {t.batch_size} must divide evenly over {world.size} processes")
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids), device


def make_optimizer(parameters, t: TrainConfig, *, capturable: bool = False) -> torch.optim.Optimizer:
    """The paper's SGD without momentum, or Adam. Both fused: they honour `found_inf` on the device
    (the protocol torch's GradScaler uses), so a NaN step is skipped without a host round trip.

    `capturable` (Adam inside CUDA graphs) keeps its step count on the device.
    """
    if t.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=t.lr, betas=tuple(t.adam_betas), fused=True, capturable=capturable)
    return torch.optim.SGD(parameters, lr=t.lr, fused=True)
