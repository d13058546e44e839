"""Data-parallel training on Ray Train: ``TorchTrainer`` starts ``num_workers`` processes in one
``torch.distributed`` group (NCCL on GPUs, gloo on CPUs) and runs the same function in each;
:class:`ultradet.engine.trainer.Trainer` does the rest (DDP, sharded clip stream, rank-0
checkpoints). With one worker nothing here is used: training runs in the calling process."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from ultradet.config import ConfigError, ExperimentConfig


@dataclass(frozen=True)
class DataParallelOptions:
    """How many workers train one model, on what, and on which Ray cluster (params.yaml ``train``).

    Attributes:
        num_workers: data-parallel workers (processes); 1 = no Ray, train in this process.
        use_gpu: one GPU per worker (NCCL); else CPU workers (gloo).
        ray_address: an existing cluster (``"auto"`` or ``"host:port"``); None = start a local
            Ray for the run and stop it after.
    """

    num_workers: int = 1
    use_gpu: bool = False
    ray_address: str | None = None

    @classmethod
    def from_params(cls, train: Mapping[str, Any]) -> "DataParallelOptions":
        """Read ``num_workers`` (default 1), ``use_gpu`` (False), ``ray_address`` (None).

        Raises:
            ConfigError: ``num_workers`` is not a positive integer.
        """
        num_workers = train.get("num_workers", 1)
        if not isinstance(num_workers, int) or isinstance(num_workers, bool) or num_workers < 1:
            raise ConfigError(f"params.yaml train.num_workers must be an integer >= 1, got {num_workers!r}")
        return cls(num_workers=num_workers, use_gpu=bool(train.get("use_gpu", False)), ray_address=train.get("ray_address"))

    def check(self, cfg: ExperimentConfig) -> int:
        """Validate the options against ``cfg`` before anything starts; returns the
        gradient-accumulation steps per optimizer step.

        Raises:
            ConfigError: the global batch does not split over the workers, or ``use_gpu`` and
                the config's ``device`` disagree.
        """
        steps = cfg.solver.accumulation_steps(self.num_workers)
        if self.num_workers > 1 and self.use_gpu and cfg.device == "cpu":
            raise ConfigError("train.use_gpu is true but the config's device is 'cpu'")
        if self.num_workers > 1 and not self.use_gpu and cfg.device == "cuda":
            raise ConfigError("the config's device is 'cuda' but train.use_gpu is false (Ray workers would see no GPU)")
        return steps


def worker_device() -> torch.device:
    """This Ray Train worker's device (its GPU, or the CPU)."""
    from ray.train.torch import get_device

    return get_device()


def run_data_parallel(
    train_fn: Callable[[Any], None], job: Any, options: DataParallelOptions, *, name: str
) -> None:
    """Run ``train_fn(job)`` on ``options.num_workers`` Ray Train workers in one DDP process group.

    ``job`` must be picklable. Every node must have the project installed (the same
    environment) and, on a multi-node cluster, see the run's output folder at the same path.

    Raises:
        ray.train.TrainingFailedError: a worker raised (its error is attached); nothing is retried,
            a re-run resumes from the last checkpoint.
    """
    import ray

    started = not ray.is_initialized()
    if started and options.ray_address is None:
        # "local": a fresh Ray for this run, never a cluster that happens to run on this machine;
        # at least one CPU per worker, so that a CPU run never waits for resources.
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, options.num_workers),
                 include_dashboard=False, configure_logging=False)
    elif started:
        ray.init(address=options.ray_address, include_dashboard=False, configure_logging=False)
    try:
        # Ray Train keeps only its own run state here; checkpoints are the trainer's.
        with tempfile.TemporaryDirectory(prefix="ray-train-") as storage:
            fit_on_workers(train_fn, job, num_workers=options.num_workers, use_gpu=options.use_gpu, name=name,
                           storage_path=storage)
    finally:
        if started:
            ray.shutdown()


def fit_on_workers(
    train_fn: Callable[[Any], None],
    job: Any,
    *,
    num_workers: int,
    use_gpu: bool,
    name: str,
    storage_path: str,
    resources_per_worker: Mapping[str, float] | None = None,
    callbacks: Sequence[Any] = (),
) -> None:
    """Run ``train_fn(job)`` on ``num_workers`` Ray Train workers of the connected Ray cluster,
    in one DDP process group (NCCL with ``use_gpu``, else gloo); no retries.

    Args:
        name, storage_path: where Ray Train keeps its run state (``<storage_path>/<name>``).
        resources_per_worker: Ray resources of each worker (default: Ray Train's, 1 CPU or 1 GPU).
        callbacks: Ray Train callbacks (a search passes Tune's report callback).

    Raises:
        ray.train.TrainingFailedError: a worker raised (its error is attached).
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        train_fn,
        train_loop_config=job,
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=num_workers, use_gpu=use_gpu,
            resources_per_worker=dict(resources_per_worker) if resources_per_worker else None,
        ),
        run_config=RunConfig(name=name, storage_path=storage_path, failure_config=FailureConfig(max_failures=0),
                             callbacks=list(callbacks)),
    )
    trainer.fit()
