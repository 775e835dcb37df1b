"""Data-parallel training under `torchrun`: every process (rank) trains one replica of the model
on its own share of each batch, and DDP averages the gradients.

Every function here is a no-op in a single process, so a plain `agegender train` runs exactly
as without it. Under torchrun:

- each rank steps through its shard of the same seeded epoch order (`step_batches`): every
  global batch is split between the ranks, so no face is read twice or missed;
- validation figures are summed over the ranks (`all_reduce_sums`), so every rank takes the
  same early-stopping and best-checkpoint decision;
- rank 0 alone writes checkpoints, logs, plots and reports (`Ranks.is_main`), and builds the
  decoded-image cache while the others wait (`build_in_turn`);
- gloo runs the collectives on the CPU, NCCL on GPUs (one GPU per local rank).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from agegender.onnx_session import available_cores

T = TypeVar("T")

GROUP_TIMEOUT = timedelta(hours=3)
"""How long a rank waits at a collective: the others wait for rank 0's cache build at one."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (torchrun's environment variables)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run's files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_environment() -> Ranks:
    """The ranks torchrun set (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE); one process
    without them."""
    def number(name: str, default: int) -> int:
        return int(os.environ.get(name, default))

    return Ranks(number("RANK", 0), number("WORLD_SIZE", 1), number("LOCAL_RANK", 0),
                 number("LOCAL_WORLD_SIZE", 1))


def start(device: str) -> tuple[Ranks, str]:
    """Join the process group when torchrun started this process: NCCL and this local rank's
    GPU for a CUDA `device`, gloo on the CPU. Returns the ranks and the device to train on."""
    ranks = from_environment()
    if not ranks.distributed or dist.is_initialized():
        return ranks, device
    if not ranks.is_main:  # one rank tells the run's progress
        logging.getLogger("agegender").setLevel(logging.WARNING)
    if device.startswith("cuda"):
        device = f"cuda:{ranks.local_rank}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                            timeout=GROUP_TIMEOUT)
    return ranks, device


def leave_together(ranks: Ranks) -> None:
    """Wait for every rank before the group is torn down: rank 0 calibrates and tests alone
    after the last epoch, and a rank that destroys the group while a peer still holds its
    gloo connections can abort in the teardown ("terminate called without an active
    exception")."""
    if ranks.distributed:
        dist.barrier()


def stop() -> None:
    """Leave the process group (when one was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def current() -> Ranks:
    """The ranks of the joined process group; one process when none was joined."""
    return from_environment() if dist.is_initialized() else Ranks()


def threads_per_rank(ranks: Ranks) -> int:
    """CPU threads each rank may use, so the ranks on one machine share its cores instead of
    each taking all of them."""
    return max(1, available_cores() // ranks.local_world_size)


def step_batches(order: np.ndarray, batch_size: int, ranks: Ranks) -> list[np.ndarray]:
    """The batches this rank steps through in an epoch that visits `order`.

    The global batches are those of one process (`batch_size` consecutive rows of `order`),
    each split between the ranks as evenly as possible; a last batch too small to give every
    rank a row joins the one before it. So the ranks take the same number of steps, and
    together they read every row of `order` exactly once.
    """
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if not ranks.distributed:
        return batches
    if len(order) < ranks.world_size:
        raise ValueError(f"{len(order)} training faces cannot be shared among "
                         f"{ranks.world_size} processes")
    if len(batches) > 1 and len(batches[-1]) < ranks.world_size:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return [np.array_split(batch, ranks.world_size)[ranks.rank] for batch in batches]


def shard(rows: np.ndarray, ranks: Ranks) -> np.ndarray:
    """This rank's contiguous part of `rows` (validation: each rank scores its part)."""
    return np.array_split(rows, ranks.world_size)[ranks.rank]


def all_reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """`values` summed over the ranks (NCCL needs the tensor on this rank's GPU)."""
    if not dist.is_initialized():
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def build_in_turn(ranks: Ranks, build: Callable[[], T]) -> T:
    """`build()` on every rank, in turns with a barrier between them: rank 0 first (it builds
    the decoded-image cache), then the first rank of every other machine (which builds its own
    when the machines share no disk), then the rest, which find the cache ready."""
    if not ranks.distributed:
        return build()
    turn = 0 if ranks.is_main else 1 if ranks.local_rank == 0 else 2
    result = None
    for current_turn in range(3):
        if current_turn == turn:
            result = build()
        dist.barrier()
    return result


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` wrapped in DDP when there are several ranks, else `model` itself.

    DDP registers the parameters that train when it is built, so the trainer wraps again when
    a frozen backbone thaws. Buffers are not broadcast at every forward pass: a broadcast
    would rewrite, in place, the statistics a frozen BatchNorm saved for the backward pass of
    a step with two forward passes (the consistency term). Frozen statistics never change;
    trained BatchNorm keeps each rank's running statistics, and rank 0's are saved.
    """
    if not dist.is_initialized():
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    parallel = nn.parallel.DistributedDataParallel
    # the option's newer name, where this torch has it (both keep the sync when built)
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers"
               in inspect.signature(parallel).parameters else "broadcast_buffers")
    return parallel(model, device_ids=device_ids, **{no_sync: False})
