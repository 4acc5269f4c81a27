"""DistributedDataParallel plumbing: the same training loop on one process or under `torchrun`.

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK and LOCAL_WORLD_SIZE (`TorchrunEnv`); with one process none of
this runs.
NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.refs import ModelRef
from tasks.models import pick_device


def barrier() -> None:
    """Wait for every DDP rank (a no-op outside torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


class TorchrunEnv(BaseSettings):
    """What torchrun tells each process it starts (one process without torchrun: rank 0 of 1)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    WORLD_SIZE: int = 1
    RANK: int = 0
    LOCAL_RANK: int = 0
    LOCAL_WORLD_SIZE: int | None = None

    @property
    def rank(self) -> int:
        return self.RANK


def distributed_setup() -> tuple[torch.device, int, int]:
    """(device, rank, world size); joins the process group when started by torchrun."""
    env = TorchrunEnv()
    world = env.WORLD_SIZE
    if world == 1:
        return pick_device(), 0, 1
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    local = env.LOCAL_RANK
    if cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        # on CPU the ranks share the cores: split them instead of oversubscribing (~7x slower)
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // (env.LOCAL_WORLD_SIZE or world)))
        device = torch.device("cpu")
    return device, dist.get_rank(), world


def wrap_ddp(model: Any, device: torch.device) -> Any:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def share_from_rank0(ref: ModelRef | None) -> ModelRef:
    box: list[Any] = [ref]
    torch.distributed.broadcast_object_list(box, src=0)
    shared = box[0]
    assert isinstance(shared, ModelRef), "rank 0 registered no model version"
    return shared
