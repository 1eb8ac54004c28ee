"""Process-group plumbing for data-parallel training launched by torchrun.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a plain
`python` launch sets none of them and runs as rank 0 of 1. GPU runs use NCCL with one
device per local rank; CPU runs use gloo (the test suite runs 2 gloo processes).

Every helper here is a no-op (or the identity) in a single process, so the training code
calls them unconditionally.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in the job.

    Attributes:
        rank: global rank in [0, world_size); rank 0 alone writes run files.
        world_size: number of data-parallel processes.
        local_rank: rank on this host; picks the GPU.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"DistributedEnv.world_size must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(
                f"DistributedEnv.rank must be in [0, {self.world_size}), got {self.rank}"
            )
        if self.local_rank < 0:
            raise ValueError(f"DistributedEnv.local_rank must be >= 0, got {self.local_rank}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DistributedEnv:
        """Read torchrun's variables; absent variables mean a single process."""
        environ = os.environ if environ is None else environ
        try:
            return cls(
                rank=int(environ.get("RANK", "0")),
                world_size=int(environ.get("WORLD_SIZE", "1")),
                local_rank=int(environ.get("LOCAL_RANK", "0")),
            )
        except ValueError as error:
            raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {error}") from error

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def device(self) -> torch.device:
        """This process's GPU when CUDA is available, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def init_process_group(
    env: DistributedEnv, device: torch.device, timeout_s: float = 1800.0
) -> None:
    """Join the job's process group (NCCL on GPU, gloo on CPU); nothing for one process."""
    if not env.is_distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        rank=env.rank,
        world_size=env.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def is_active() -> bool:
    """True when collectives must be called (an initialized group of more than 1 rank)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean of `values` over ranks (a new tensor; the input is left alone)."""
    if not is_active():
        return values.clone()
    reduced = values.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / dist.get_world_size()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of `values` over ranks (a new tensor)."""
    if not is_active():
        return values.clone()
    reduced = values.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, indexed by rank (pickled through the process group)."""
    if not is_active():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    if is_active():
        dist.barrier()
