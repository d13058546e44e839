"""Data-parallel training inside one process group (``torch.distributed``): who am I, wrap the
model for DDP, average scalars over the workers. The group itself is made by whoever launches
the workers (Ray Train's ``TorchTrainer`` in :mod:`ultradet.engine.ray_launch`, or a test);
without one, everything here is the single-process identity."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class WorkerGroup:
    """This process's place among the data-parallel workers (``rank`` 0 writes checkpoints and logs)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> "WorkerGroup":
        """The initialised default process group, or a single worker when there is none."""
        if dist.is_available() and dist.is_initialized():
            return cls(rank=dist.get_rank(), world_size=dist.get_world_size())
        return cls()


def wrap_data_parallel(module: torch.nn.Module, device: torch.device, group: WorkerGroup) -> torch.nn.Module:
    """``module`` itself for one worker; else ``DistributedDataParallel`` over the default group
    (gradients averaged over workers in backward; rank 0's parameters and buffers broadcast at
    construction and its buffers, e.g. BatchNorm statistics, at every forward)."""
    if group.world_size == 1:
        return module
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def mean_over_workers(values: dict[str, float], group: WorkerGroup, device: torch.device) -> dict[str, float]:
    """Average named scalars over the workers (every worker gets the same result; NaN spreads)."""
    if group.world_size == 1 or not values:
        return values
    names = list(values)  # the same order on every worker: the same model code made them
    tensor = torch.tensor([values[n] for n in names], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {name: float(v) / group.world_size for name, v in zip(names, tensor.tolist())}
