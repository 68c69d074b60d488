"""Data parallelism through torchrun: one process per GPU (or per CPU worker), gradients averaged
by DistributedDataParallel.

    torchrun --standalone --nproc-per-node 2 -m nmt train --config C            # one node
    torchrun --nnodes 2 --node-rank R --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
             --nproc-per-node 8 -m nmt train --config C                          # several nodes

`train.batch_size` stays the global batch: every rank builds the same batches from the seed and
takes its own share of each (rows rank, rank + world, ...). Each rank divides its summed loss by
the global batch's size over the world size; DDP's average over ranks then gives exactly the
gradient of the global batch's loss, as one process would compute it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nmt.device import pick_device


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flags: list[bool], device: torch.device) -> list[bool]:
        """Each flag true on every rank if it is true on any (a collective: every rank must call it)."""
        if self.size == 1:
            return list(flags)
        values = torch.tensor([float(f) for f in flags], device=device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return [bool(v) for v in values.tolist()]


def first_process() -> bool:
    """Whether this is the process that writes (rank 0 under torchrun; a lone process is)."""
    return int(os.environ.get("RANK", "0")) == 0


def join(device_name: str) -> tuple[World, torch.device]:
    """Join the process group that torchrun describes in the environment, if any."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), pick_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(rank, size, local_rank), device


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
