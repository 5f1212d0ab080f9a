"""A run's ranks: one process per rank under torchrun; gloo on the CPU, NCCL on CUDA.

How a run is split among ``W`` ranks (every number in a record depends on it):

* ``batch_size`` is the **global** batch. Each rank takes ``batch_size / W``
  images of it, so it must divide (a one-line :class:`UsageError` otherwise).
* ``tensor`` loader: every rank draws the same permutation each epoch (same
  seed), cuts it into the same global batches as a single process would, and
  takes the ``rank``-th contiguous block of each. A last global batch that
  cannot be split evenly loses its last ``(n % batch_size) % W`` images, so
  that every rank makes the same number of equal-sized steps (recorded as
  ``dropped_per_epoch``).
* ``dataloader`` loader: a :class:`DistributedSampler`, which pads the epoch
  with repeated images instead (recorded as ``padded_per_epoch``).
* The model is wrapped in :class:`DistributedDataParallel`, which averages
  gradients over ranks. With equal shards the mean of the ranks' mean losses
  is the mean over the global batch, so a step is the single-process step at
  the same global batch, up to float rounding. Two exceptions: BatchNorm
  normalises with each rank's own shard, and random augmentation draws from
  a stream per rank.
* The per-epoch loss is the mean over ranks; evaluation is sharded (rank
  ``r`` takes test images ``r, r + W, ...``) and its counts are summed. Before
  evaluating, every rank takes rank 0's buffers, so all of them evaluate one
  model.
* Only rank 0 prints and writes records.

Every collective has a timeout, so a rank that hangs fails the others after
at most that long, never forever. Starting the ranks, and what a failing one
does, is the execution layer's (``execution/torchrun.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import UsageError
from ..results.schema import DistributedInfo

#: What torchrun sets in each rank's environment; all three mean "launched by torchrun".
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

#: Seconds a rank waits in a collective (or for the group to form) before failing.
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class World:
    """This process's place among the ranks; in a single process every helper is a no-op."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: a single process, no process group
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where reduced scalars live

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def main(self) -> bool:
        """Rank 0: the one that prints and writes records."""
        return self.rank == 0

    # -- devices and batches ------------------------------------------------------

    def device_for(self, device: str) -> str:
        """The device this rank runs on: ``cuda`` means this rank's own GPU, ``cuda:LOCAL_RANK``."""
        return f"cuda:{self.local_rank}" if self.distributed and device == "cuda" else device

    def per_rank_batch(self, global_batch: int) -> int:
        if global_batch % self.size:
            raise UsageError(
                f"batch_size {global_batch} is the global batch and must divide evenly among "
                f"{self.size} ranks; use a multiple of {self.size}"
            )
        return global_batch // self.size

    def shard_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous block of one global batch of indices (empty if it cannot be split)."""
        if self.size == 1:
            return batch  # the single-process path pays nothing per step
        usable = len(batch) - len(batch) % self.size  # equal shards, or the gradient average is skewed
        return batch[:usable].view(self.size, -1)[self.rank]

    def shard_test(self, indices: torch.Tensor) -> torch.Tensor:
        """Test images ``rank, rank + W, ...``: counts are summed, so shards need not be equal."""
        return indices[self.rank :: self.size]

    def sampler(self, dataset: torch.utils.data.Dataset, seed: int) -> torch.utils.data.Sampler | None:
        """The DataLoader path's training sampler: this rank's share of each shuffled epoch."""
        if not self.distributed:
            return None
        return torch.utils.data.DistributedSampler(dataset, self.size, self.rank, shuffle=True, seed=seed)

    def describe(self, global_batch: int, train_size: int, loader: str) -> DistributedInfo | None:
        """The record's ``distributed`` field: how this run was split (``None`` for one process)."""
        if not self.distributed:
            return None
        padded = -train_size % self.size if loader == "dataloader" else 0
        dropped = (train_size % global_batch) % self.size if loader == "tensor" else 0
        return DistributedInfo(world_size=self.size, backend=self.backend, global_batch_size=global_batch,
                               per_rank_batch_size=global_batch // self.size, dropped_per_epoch=dropped,
                               padded_per_epoch=padded)  # fmt: skip

    # -- the model and reductions -------------------------------------------------

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` in DistributedDataParallel (which also copies rank 0's weights to every rank)."""
        if not self.distributed:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over ranks, in place."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean(self, value: float) -> float:
        if not self.distributed:
            return value
        return self.sum(torch.tensor(value, dtype=torch.float64, device=self.device)).item() / self.size

    def broadcast_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) to every rank, so that all evaluate one model."""
        if self.distributed:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)


#: One process, no process group: the world of every run that is not data-parallel.
SINGLE = World()


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_ENV)


def backend_for(device: str) -> str:
    """gloo on the CPU, NCCL on CUDA; nothing else can run data-parallel here."""
    if device == "cpu":
        return "gloo"
    if device == "cuda":
        return "nccl"
    if device.startswith("cuda:"):
        raise UsageError(f"--device {device}: in a data-parallel run each rank uses its own GPU; pass --device cuda")
    raise UsageError(f"--device {device}: data-parallel runs need cpu or cuda")


def join(devices: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """Join the process group torchrun set up (from RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    The world is passed down from here to every run of the process; :func:`leave` ends it.
    """
    if len(devices) != 1:
        raise UsageError(f"a data-parallel run takes one device, got {','.join(devices)}")
    backend = backend_for(devices[0])
    rank, size, local_rank = (int(os.environ[name]) for name in TORCHRUN_ENV)
    device = torch.device("cpu")
    if backend == "nccl":
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise UsageError(f"rank {rank} needs cuda:{local_rank}, but this machine has {torch.cuda.device_count()}")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    # The timeout also bounds every gloo/NCCL collective: a rank that hangs fails the others, never stalls them.
    dist.init_process_group(backend, rank=rank, world_size=size, timeout=timedelta(seconds=timeout_s))
    return World(rank, size, local_rank, backend, device)


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
