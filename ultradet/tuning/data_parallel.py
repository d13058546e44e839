"""A trial trained data-parallel: ``workers_per_trial`` Ray Train workers (DDP) that the trial
starts itself (:func:`ultradet.engine.ray_launch.fit_on_workers`), splitting the trial's CPUs
and GPUs (:func:`ultradet.tuning.resources.split_trial_resources`); rank 0 validates and its
reports reach Tune through Ray's ``TuneReportCallback``."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ultradet.engine.distributed import WorkerGroup
from ultradet.engine.launch import build_trainer
from ultradet.engine.ray_launch import fit_on_workers, worker_device
from ultradet.tuning.reporting import PeriodicValidation, restore_checkpoints
from ultradet.tuning.resources import split_trial_resources
from ultradet.tuning.setup import TrialSetup


@dataclass(frozen=True)
class WorkerJob:
    """What each Ray Train worker of a trial needs (picklable)."""

    setup: TrialSetup
    cfg: Any
    train: list
    val: list
    gt: dict
    run_id: str | None


def trial_worker(job: WorkerJob) -> None:
    """One Ray Train worker of a data-parallel trial; resumes from the trial's last reported checkpoint."""
    import ray.train
    from mlflow import MlflowClient

    from ultradet.experiment_log import TrackedRun, TrialRun

    group = WorkerGroup.current()
    run = None
    if group.is_main and job.run_id is not None:
        run = TrialRun(TrackedRun(MlflowClient(tracking_uri=job.setup.tracking_uri), job.run_id))
        run.run.set_tags({"ultradet.num_workers": group.world_size})  # as the train stage tags its runs
    workdir = Path(tempfile.mkdtemp(prefix="trial-worker-"))
    try:
        restore_checkpoints(ray.train.get_checkpoint(), workdir)
        trainer = build_trainer(job.cfg, job.train, workdir, progress=False, device=worker_device())
        setup = job.setup
        trainer.register_hook(PeriodicValidation(
            trainer, cfg=job.cfg, eval_period=setup.eval_period, metric=setup.metric, mode=setup.mode,
            val_videos=job.val, gt=job.gt, run=run, on_workers=True,
        ))
        trainer.train(resume=True)
    finally:
        if run is not None:
            run.losses.flush()
        shutil.rmtree(workdir, ignore_errors=True)


def train_on_workers(setup: TrialSetup, cfg, train: list, val: list, gt: dict, run) -> None:
    """Train the trial on ``setup.workers_per_trial`` Ray Train workers, which split the trial's
    CPUs and GPUs; a retried trial resumes from the run state kept in the trial's folder.

    Args:
        run: the trial's :class:`~ultradet.experiment_log.TrialRun` (rank 0 logs into it), or None.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    _, resources = split_trial_resources(setup.cpus_per_trial, setup.gpus_per_trial, setup.workers_per_trial)
    fit_on_workers(
        trial_worker, WorkerJob(setup, cfg, train, val, gt, run.run.run_id if run is not None else None),
        num_workers=setup.workers_per_trial, use_gpu=bool(setup.gpus_per_trial),
        name="ray_train", storage_path=tune.get_context().get_trial_dir(),
        resources_per_worker=resources, callbacks=[TuneReportCallback()],
    )
