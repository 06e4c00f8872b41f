"""One process or many: joining the process group when launched by ``torchrun``.

``torchrun --nproc_per_node N -m dbrepro train ...`` starts N processes with ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` set; :func:`dbrepro.train.fit` joins them into one group (NCCL on GPUs, gloo on CPUs), each
process on the GPU of its local rank, and rank 0 alone writes the run. The run cache must be one folder that
every process sees (on several machines: a shared file system).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether this process is one of several that ``torchrun`` started (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def environment_rank() -> int:
    """This process's rank as ``torchrun`` set it (``RANK``; 0 for a single process), before any group is joined."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (or already joined); a single process otherwise.

    NCCL on GPUs, gloo on CPUs. ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` come from torchrun's environment.
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    if not launched():
        return DistInfo()
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def process_device(device: torch.device, info: DistInfo) -> torch.device:
    """This process's device: with several GPU processes, the GPU of its local rank."""
    if device.type == "cuda" and info.world_size > 1:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device


def barrier(info: DistInfo) -> None:
    """Wait until every process of the group is here (nothing to wait for in a single process)."""
    if info.world_size > 1:
        if dist.get_backend() == "nccl":  # on this process's GPU (set by process_device), not NCCL's guess
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
