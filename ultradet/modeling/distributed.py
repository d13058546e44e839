"""Loss normalisers shared by the data-parallel workers: a count averaged over the
``torch.distributed`` process group, as the original detectors divide their losses by
``reduce_sum(count) / world_size`` (FCOS, baselines spec 2.2; DETR and Deformable DETR's
``num_boxes``, baselines spec 3.1). Without a process group it is the worker's own count."""

from __future__ import annotations

import torch
import torch.distributed as dist


def all_reduce_mean(value: torch.Tensor) -> float:
    """``value`` (a scalar tensor) averaged over the ``torch.distributed`` workers when a process
    group is initialised, else ``value`` itself. Every worker must call it at the same point
    (it is a collective); ``value`` is not modified and carries no gradient."""
    if dist.is_available() and dist.is_initialized():
        value = value.detach().clone()
        dist.all_reduce(value)
        return float(value) / dist.get_world_size()
    return float(value)
