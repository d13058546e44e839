"""How a trial talks to Tune: every ``eval_period`` iterations it validates, checkpoints and
reports; a retried or resumed trial starts from the checkpoint it last reported."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ultradet.data.records import VideoRecord
from ultradet.engine.checkpoint import atomic_torch_save, checkpoint_path
from ultradet.engine.launch import predict_videos
from ultradet.engine.trainer import Trainer
from ultradet.evaluation import evaluate

# Tune needs a number to rank and prune on. A metric is NaN when it is undefined (no detections
# at all, or no ground truth in the validation split); such a trial must rank last, not poison
# the searcher.
WORST = 1e9


def score_for_tune(value: float, mode: str) -> float:
    """``value`` if finite, else the worst score for ``mode`` (``min``: +1e9, ``max``: -1e9)."""
    if math.isfinite(value):
        return value
    return WORST if mode == "min" else -WORST


class PeriodicValidation:
    """Trainer hook: every ``eval_period`` iterations (and at the last), validate, checkpoint and
    report ``metric`` and ``<metric>_score`` (:func:`score_for_tune`) with the evaluation's metrics.

    In a trial's own process it reports to Tune (``tune.report``); on Ray Train workers every
    worker reports (``ray.train.report`` is a barrier) but only rank 0 validates, logs and
    attaches a checkpoint, and Ray's ``TuneReportCallback`` forwards rank 0's metrics to Tune.

    Args:
        trainer: the built trainer (its model is validated, its state checkpointed); register
            the hook on it with :meth:`~ultradet.engine.trainer.Trainer.register_hook`.
        cfg: the trial's config (test scale, ``solver.max_iter``).
        val_videos, gt: the validation split and the COCO-VID ground truth holding it.
        run: the trial's :class:`~ultradet.experiment_log.TrialRun`, or None (no tracking).
        on_workers: True on Ray Train workers.
    """

    def __init__(
        self, trainer: Trainer, *, cfg, eval_period: int, metric: str, mode: str,
        val_videos: Sequence[VideoRecord], gt: dict, run: Any = None, on_workers: bool = False,
    ):
        self.trainer, self.cfg, self.eval_period, self.metric, self.mode = trainer, cfg, eval_period, metric, mode
        self.val_videos, self.gt, self.run, self.on_workers = val_videos, gt, run, on_workers

    def after_step(self, iteration: int, losses: dict[str, float], lr: float) -> None:
        if self.run is not None:
            self.run.log_losses(iteration, losses, lr)
        if iteration % self.eval_period == 0 or iteration == self.cfg.solver.max_iter:
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
        metrics[f"{self.metric}_score"] = score_for_tune(metrics[self.metric], self.mode)
        if self.run is not None:
            self.run.log_validation(iteration, metrics)
        with tempfile.TemporaryDirectory() as tmp:
            atomic_torch_save(self.trainer.state_dict(), checkpoint_path(tmp, iteration))
            if self.on_workers:
                import ray.train

                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            else:
                from ray import tune

                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


def restore_checkpoints(checkpoint, workdir: Path) -> None:
    """Copy the trainer checkpoints of a reported Tune/Train checkpoint (or None: a fresh trial)
    into ``workdir``, where the trainer resumes from them."""
    if checkpoint is None:
        return
    with checkpoint.as_directory() as ckpt_dir:
        for file in Path(ckpt_dir).glob("model_*.pth"):
            shutil.copy(file, workdir / file.name)
