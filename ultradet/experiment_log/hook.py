"""The trainer hook that logs loss curves to a run."""

from __future__ import annotations

import warnings
from typing import Mapping

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from ultradet.experiment_log.keys import metric
from ultradet.experiment_log.run import TrackedRun


class MLflowHook:
    """Trainer hook (``after_step``/``after_train``/``flush``) logging loss curves to a run.

    Per iteration it records ``<prefix>loss_total`` (sum of the losses), each named loss and
    ``<prefix>lr`` at ``step = iteration``; it sends them every ``flush_every`` iterations in
    batched requests, at the trainer's checkpoints (``flush``) and at the end. A failed send
    only warns: ``losses.csv`` is the record the report reads, MLflow a view of it, so a tracking
    hiccup must not kill hours of training.
    """

    def __init__(self, run: TrackedRun, *, flush_every: int = 50, prefix: str = "train/"):
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.run, self.flush_every, self.prefix = run, flush_every, prefix
        self._buffer: list[Metric] = []

    def after_step(self, iteration: int, losses: Mapping[str, float], lr: float) -> None:
        """Buffer one iteration's losses (scalars) and learning rate; flush every ``flush_every``."""
        values = {"loss_total": sum(losses.values()), **losses, "lr": lr}
        self._buffer += [metric(self.prefix + k, v, iteration) for k, v in values.items()]
        if iteration % self.flush_every == 0:
            self.flush()

    def flush(self) -> None:
        """Send the buffered metrics now."""
        buffer, self._buffer = self._buffer, []
        try:
            self.run.log_metric_batch(buffer)
        except (MlflowException, OSError) as exc:
            warnings.warn(f"MLflow: dropped {len(buffer)} loss values of run {self.run.run_id}: {exc}")

    def after_train(self) -> None:
        """Send what is left."""
        self.flush()
