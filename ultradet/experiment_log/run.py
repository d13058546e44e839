"""One MLflow run, logged to through an explicit client (no global active run)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

from ultradet.config import flatten
from ultradet.experiment_log.keys import as_tags, chunks, is_number, metric, param_value, sanitize_key


@dataclass
class TrackedRun:
    """One MLflow run, logged to through an explicit client (no global active run)."""

    client: MlflowClient
    run_id: str

    def log_config(self, cfg: Any) -> None:
        """Log a config (pydantic model or nested mapping) as flattened params
        (``model.temporal.interval_pre_test``); lists as JSON, values cut to 6000 characters.

        Raises:
            MlflowException: a param already logged in this run with a different value.
        """
        params = [Param(sanitize_key(k), param_value(v)) for k, v in flatten(cfg).items()]
        for chunk in chunks(params, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk)

    def log_metrics_step(self, metrics: Mapping[str, float], step: int) -> None:
        """Log numeric ``metrics`` at ``step`` in one request (names sanitized, non-numbers skipped)."""
        self.log_metric_batch([metric(k, v, step) for k, v in metrics.items() if is_number(v)])

    def log_eval_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Log an evaluation's ``metrics.json`` dict at step 0; ``None``/non-numeric values
        (e.g. an undefined threshold) are skipped, NaN is kept (MLflow stores it)."""
        self.log_metrics_step(metrics, step=0)

    def log_metric_batch(self, metrics: list[Metric]) -> None:
        """Log metric entities, each with its own step and timestamp (a loss curve's buffer), in
        as few requests as MLflow's batch limit allows."""
        for chunk in chunks(metrics, MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_artifacts(self, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
        """Upload files (and directories, recursively) into the run's artifacts.

        Raises:
            FileNotFoundError: naming the first path that does not exist (nothing is uploaded).
        """
        paths = [Path(p) for p in paths]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"cannot log missing artifact(s): {', '.join(missing)}")
        for path in paths:
            if path.is_dir():
                sub = posixpath.join(artifact_path, path.name) if artifact_path else path.name
                self.client.log_artifacts(self.run_id, str(path), sub)
            else:
                self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set string tags (values cut to MLflow's limit, ``None`` skipped)."""
        entities = [RunTag(k, v) for k, v in as_tags(tags).items()]
        for chunk in chunks(entities, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=chunk)
