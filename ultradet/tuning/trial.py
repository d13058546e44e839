"""The Ray Tune trainable: one trial = one config trained on the training folds and evaluated
every ``eval_period`` iterations on a validation split carved from them (never the test fold)."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ultradet.config import load_experiment
from ultradet.data import load_videos, split_by_folds
from ultradet.data.records import VideoRecord
from ultradet.engine.checkpoint import atomic_torch_save, checkpoint_path
from ultradet.engine.launch import build_trainer, predict_videos
from ultradet.evaluation import evaluate
from ultradet.tuning.space import decode

# Tune needs a number to rank and prune on. A metric is NaN when it is undefined (no detections
# at all, or no ground truth in the validation split); such a trial must rank last, not poison
# the searcher.
WORST = 1e9


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
    """Trainer hook: every ``period`` iterations, validate, checkpoint and report to Tune."""

    def __init__(self, *, setup: TrialSetup, cfg, val_videos, gt: dict, run):
        self.setup, self.cfg, self.val_videos, self.gt, self.run = setup, cfg, val_videos, gt, run
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
        from ray import tune

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
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


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

    workdir = Path(tempfile.mkdtemp(prefix="trial-"))
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as ckpt_dir:
            for file in Path(ckpt_dir).glob("model_*.pth"):
                shutil.copy(file, workdir / file.name)

    run = _trial_run(setup, sampled, cfg)
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
