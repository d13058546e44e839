"""The Ray Tune trainable: one trial = one config trained on the training folds and evaluated
every ``eval_period`` iterations on a validation split carved from them (never the test fold).

A trial trains in its own process, or, with ``workers_per_trial`` > 1, on that many Ray Train
workers (DDP) that it starts itself; then rank 0 validates and its reports reach Tune through
Ray's ``TuneReportCallback``."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ultradet.config import ConfigError, load_experiment
from ultradet.data import load_videos, split_by_folds
from ultradet.data.records import VideoRecord
from ultradet.engine.checkpoint import atomic_torch_save, checkpoint_path
from ultradet.engine.distributed import WorkerGroup
from ultradet.engine.launch import build_trainer, predict_videos
from ultradet.evaluation import evaluate
from ultradet.tuning.space import decode

# Tune needs a number to rank and prune on. A metric is NaN when it is undefined (no detections
# at all, or no ground truth in the validation split); such a trial must rank last, not poison
# the searcher.
WORST = 1e9

# A data-parallel trial's own process only starts its Ray Train workers and waits for them; Ray
# Train reserves the workers' resources in a placement group of its own, not the trial's. The
# trial process keeps this sliver of a CPU (Tune cannot start a trial that asks for nothing) and
# the workers split the rest of the trial's CPUs.
TRIAL_DRIVER_CPUS = 0.01


@dataclass(frozen=True)
class TrialSetup:
    """Everything a trial needs besides the sampled config (picklable, sent to Ray workers)."""

    experiment: str
    experiments_dir: str
    profile: str | None
    overrides: dict[str, Any]
    data_root: str
    num_folds: int
    test_fold: int
    val_fraction: float
    eval_period: int
    metric: str
    mode: str
    seed: int
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    workers_per_trial: int = 1   # > 1: data-parallel Ray Train workers, splitting the trial's resources
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0


def split_trial_resources(cpus: float, gpus: float, workers: int) -> tuple[dict[str, float], dict[str, float] | None]:
    """Resources of a trial's own process (for ``tune.with_resources``) and of each of its Ray
    Train workers (``None`` when the trial trains in its own process, ``workers`` = 1).

    With ``workers`` > 1 the trial's process holds :data:`TRIAL_DRIVER_CPUS` and each worker
    ``(cpus - TRIAL_DRIVER_CPUS) / workers`` CPUs and ``gpus / workers`` GPUs, rounded down to
    Ray's 0.0001 resource unit: the trial holds at most ``cpus`` and ``gpus`` in all.

    Raises:
        ConfigError: ``workers`` < 1, or ``cpus`` leave nothing for the workers.
    """
    if workers < 1:
        raise ConfigError(f"workers_per_trial (--workers-per-trial) must be >= 1, got {workers}")
    if workers == 1:
        return {"cpu": cpus, "gpu": gpus}, None
    if cpus <= TRIAL_DRIVER_CPUS:
        raise ConfigError(f"cpus_per_trial (--cpus-per-trial) must exceed {TRIAL_DRIVER_CPUS} with {workers} workers per trial, got {cpus}")
    per_worker = {"CPU": math.floor((cpus - TRIAL_DRIVER_CPUS) / workers * 1e4) / 1e4}
    if gpus:
        per_worker["GPU"] = math.floor(gpus / workers * 1e4) / 1e4
    return {"cpu": TRIAL_DRIVER_CPUS, "gpu": 0}, per_worker


def carve_validation(videos: list[VideoRecord], *, fraction: float, seed: int) -> tuple[list, list]:
    """Split ``videos`` into (train, validation) by patient, so no patient is in both.

    Raises:
        ValueError: fewer than two patients, or ``fraction`` outside (0, 1).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    patients = sorted({v.patient_id for v in videos})
    if len(patients) < 2:
        raise ValueError(f"need at least 2 patients to carve a validation split, got {len(patients)}")
    n_val = min(len(patients) - 1, max(1, round(fraction * len(patients))))
    val = set(np.random.default_rng(seed).permutation(patients)[:n_val].tolist())
    return [v for v in videos if v.patient_id not in val], [v for v in videos if v.patient_id in val]


def score_for_tune(value: float, mode: str) -> float:
    """``value`` if finite, else the worst score for ``mode`` (``min``: +1e9, ``max``: -1e9)."""
    if math.isfinite(value):
        return value
    return WORST if mode == "min" else -WORST


class _PeriodicValidation:
    """Trainer hook: every ``period`` iterations, validate, checkpoint and report.

    In a trial's own process it reports to Tune (``tune.report``); on Ray Train workers every
    worker reports (``ray.train.report`` is a barrier) but only rank 0 validates, logs and
    attaches a checkpoint, and Ray's ``TuneReportCallback`` forwards rank 0's metrics to Tune.
    """

    def __init__(self, *, setup: TrialSetup, cfg, val_videos, gt: dict, run, on_workers: bool = False):
        self.setup, self.cfg, self.val_videos, self.gt, self.run = setup, cfg, val_videos, gt, run
        self.on_workers = on_workers
        self.trainer = None  # set right after the trainer is built
        self.last_reported = 0

    def after_step(self, iteration: int, losses: dict[str, float], lr: float) -> None:
        if self.run is not None:
            self.run.log_losses(iteration, losses, lr)
        if iteration % self.setup.eval_period == 0 or iteration == self.cfg.solver.max_iter:
            self._validate_and_report(iteration)

    def after_train(self) -> None:
        pass

    def _validate_and_report(self, iteration: int) -> None:
        if not self.trainer.group.is_main:
            import ray.train

            ray.train.report({})
            return
        model = self.trainer.model
        model.eval()
        results, timing = predict_videos(self.cfg, model, self.val_videos, warmup_frames=0, progress=False)
        model.train()
        metrics = evaluate(self.gt, results, video_ids=[v.video_id for v in self.val_videos]).metrics
        metrics = {**metrics, "FPS": timing.fps, "iteration": iteration}
        metrics[f"{self.setup.metric}_score"] = score_for_tune(metrics[self.setup.metric], self.setup.mode)
        if self.run is not None:
            self.run.log_validation(iteration, metrics)
        with tempfile.TemporaryDirectory() as tmp:
            atomic_torch_save(self.trainer.state_dict(), checkpoint_path(tmp, iteration))
            self.last_reported = iteration
            if self.on_workers:
                import ray.train

                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            else:
                from ray import tune

                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def _copy_checkpoints(checkpoint, workdir: Path) -> None:
    """Copy the trainer checkpoints of a Tune/Train checkpoint (or None) into ``workdir``."""
    if checkpoint is None:
        return
    with checkpoint.as_directory() as ckpt_dir:
        for file in Path(ckpt_dir).glob("model_*.pth"):
            shutil.copy(file, workdir / file.name)


@dataclass(frozen=True)
class _WorkerJob:
    """What each Ray Train worker of a trial needs (picklable)."""

    setup: TrialSetup
    cfg: Any
    train: list
    val: list
    gt: dict
    run_id: str | None


def _trial_worker(job: _WorkerJob) -> None:
    """One Ray Train worker of a data-parallel trial; resumes from the trial's last reported checkpoint."""
    import ray.train
    from mlflow import MlflowClient

    from ultradet import experiment_log
    from ultradet.engine.ray_launch import worker_device
    from ultradet.tuning.tracking import TrialRun

    group = WorkerGroup.current()
    run = None
    if group.is_main and job.run_id is not None:
        run = TrialRun(experiment_log.TrackedRun(MlflowClient(tracking_uri=job.setup.tracking_uri), job.run_id))
        run.run.set_tags({"ultradet.num_workers": group.world_size})  # as the train stage tags its runs
    workdir = Path(tempfile.mkdtemp(prefix="trial-worker-"))
    try:
        _copy_checkpoints(ray.train.get_checkpoint(), workdir)
        hook = _PeriodicValidation(setup=job.setup, cfg=job.cfg, val_videos=job.val, gt=job.gt, run=run, on_workers=True)
        trainer = build_trainer(job.cfg, job.train, workdir, hooks=[hook], progress=False, device=worker_device())
        hook.trainer = trainer
        trainer.train(resume=True)
    finally:
        if run is not None:
            run.losses.flush()
        shutil.rmtree(workdir, ignore_errors=True)


def _train_on_workers(setup: TrialSetup, cfg, train, val, gt, run) -> None:
    """Train the trial on ``setup.workers_per_trial`` Ray Train workers, which split the trial's
    CPUs and GPUs; a retried trial resumes from the run state kept in the trial's folder."""
    from ray import tune
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    n = setup.workers_per_trial
    _, resources = split_trial_resources(setup.cpus_per_trial, setup.gpus_per_trial, n)
    trainer = TorchTrainer(
        _trial_worker,
        train_loop_config=_WorkerJob(setup, cfg, train, val, gt, run.run.run_id if run is not None else None),
        torch_config=TorchConfig(backend="nccl" if setup.gpus_per_trial else "gloo"),
        scaling_config=ScalingConfig(num_workers=n, use_gpu=bool(setup.gpus_per_trial), resources_per_worker=resources),
        run_config=RunConfig(
            name="ray_train", storage_path=tune.get_context().get_trial_dir(),
            failure_config=FailureConfig(max_failures=0), callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def run_trial(config: dict, setup: TrialSetup) -> None:
    """Ray Tune function trainable (use with ``tune.with_parameters(run_trial, setup=...)``)."""
    from ray import tune

    sampled = decode(config)
    cfg = load_experiment(
        setup.experiment,
        experiments_dir=setup.experiments_dir,
        profile=setup.profile,
        overrides={**setup.overrides, **sampled, "seed": setup.seed},
    )
    videos = load_videos(setup.data_root, "trainval", num_folds=setup.num_folds)
    pool, _test = split_by_folds(videos, test_folds=[setup.test_fold])
    train, val = carve_validation(pool, fraction=setup.val_fraction, seed=setup.seed)
    gt = json.loads((Path(setup.data_root) / "trainval.json").read_text())

    run = _trial_run(setup, sampled, cfg)
    if setup.workers_per_trial > 1:
        from ray.exceptions import ActorDiedError

        status = "FAILED"
        try:
            _train_on_workers(setup, cfg, train, val, gt, run)
            status = "FINISHED"
        except ActorDiedError:
            # Tune stops a data-parallel trial by ending its Ray Train controller: ASHA stopping
            # it early, or the scheduler's max_t reached at the last evaluation (a complete trial).
            status = run.stopped_status(cfg.solver.max_iter) if run is not None else "KILLED"
            raise
        finally:
            if run is not None:
                run.end(status=status)
        return

    workdir = Path(tempfile.mkdtemp(prefix="trial-"))
    _copy_checkpoints(tune.get_checkpoint(), workdir)
    hook = _PeriodicValidation(setup=setup, cfg=cfg, val_videos=val, gt=gt, run=run)
    trainer = build_trainer(cfg, train, workdir, hooks=[hook], progress=False)
    hook.trainer = trainer
    status = "FAILED"
    try:
        trainer.train(resume=True)
        status = "FINISHED"
    except SystemExit as stop:
        # Tune ends a trial with sys.exit(0) inside tune.report: ASHA stopping it early, or the
        # scheduler's max_t reached at the last evaluation (a complete trial).
        if stop.code in (0, None):
            status = "FINISHED" if hook.last_reported == cfg.solver.max_iter else "KILLED"
        raise
    finally:
        if run is not None:
            run.end(status=status)
        shutil.rmtree(workdir, ignore_errors=True)


def _trial_run(setup: TrialSetup, sampled: dict, cfg):
    if setup.tracking_uri is None:
        return None
    from ray import tune

    from ultradet.tuning.tracking import TrialRun

    context = tune.get_context()
    return TrialRun.start(
        uri=setup.tracking_uri,
        parent_run_id=setup.parent_run_id,
        trial_id=context.get_trial_id(),
        trial_name=context.get_trial_name(),
        sampled=sampled,
        cfg=cfg,
    )
