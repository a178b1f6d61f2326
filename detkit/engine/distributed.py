"""Data-parallel training processes: who this process is, and the few collectives the engine needs.

Every training process runs the same loop on its own slice of each global batch, and DDP averages
the gradients. Rank 0 alone prints, logs, writes checkpoints and scores evaluation (from detections
gathered from every rank). Ranks come from ``torchrun``'s environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) or from
``detkit train --devices N`` (see ``launch.py``). With one process every helper here returns at once,
so single-process training pays nothing for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from detkit.engine.device import available_cores, resolve_device
from detkit.errors import ConfigError

T = TypeVar("T")

# Long enough for rank 0 to score a large validation set while the others wait on the result.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)
BACKENDS = ("auto", "nccl", "gloo")


@dataclass(frozen=True)
class Rank:
    """This process's place among the training processes (all of them, and those on this machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    # Started by a launcher (torchrun, --devices): joins a process group and trains under DDP even
    # when alone (torchrun with one GPU exercises the NCCL path).
    joined: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE_PROCESS = Rank()


def rank_from_environment() -> Rank | None:
    """The rank ``torchrun`` (or any launcher following its conventions) gave this process; None outside one."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        world_size = int(os.environ["WORLD_SIZE"])
        return Rank(
            rank=int(os.environ["RANK"]),
            world_size=world_size,
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
            joined=True,
        )
    except ValueError:
        raise ConfigError(
            "RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers; start detkit with torchrun"
        ) from None


def training_device(requested: str, rank: Rank) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` when training on several GPUs, else ``requested``."""
    device = resolve_device(requested)
    if device.type != "cuda" or not rank.joined:
        return device
    if rank.local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"{rank.local_world_size} processes on this machine but {torch.cuda.device_count()} CUDA device(s); "
            f"use --devices {torch.cuda.device_count()} (or fewer --nproc-per-node with torchrun)"
        )
    return torch.device("cuda", rank.local_rank)


def backend_for(requested: str, device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes, unless one is asked for (``check_runtime`` vetted it)."""
    if requested == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    return requested


@contextmanager
def process_group(rank: Rank, device: torch.device, backend: str, init_method: str = "env://") -> Iterator[None]:
    """Join the process group for the duration of a run (nothing to join for a process started alone)."""
    if not rank.joined:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL and the object collectives use the current device
    dist.init_process_group(
        backend,
        init_method=init_method,
        rank=rank.rank,
        world_size=rank.world_size,
        timeout=COLLECTIVE_TIMEOUT,
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


@contextmanager
def cpu_threads_per_process(rank: Rank, device: torch.device) -> Iterator[None]:
    """Share the cores among the CPU processes of this machine: N processes each using every core
    would oversubscribe them and run slower than one."""
    if device.type != "cpu" or rank.local_world_size <= 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, available_cores() // rank.local_world_size))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_to_all(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_buffers_from_main(module: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm running statistics): DDP syncs them before each
    training forward, so after the last one each process holds its own batch's update. Evaluation
    and feature extraction must all use the same model."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def sum_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over all ranks (a detached copy; ``values`` itself is untouched)."""
    total = values.detach().clone()
    if is_distributed():
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def shard_indices(count: int, rank: int, world_size: int) -> Sequence[int]:
    """Rank ``rank``'s share of ``range(count)``: every ``world_size``-th item, so shares differ by at most one."""
    return range(rank, count, world_size)
