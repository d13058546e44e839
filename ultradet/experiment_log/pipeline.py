"""The pipeline's view of the store: opens the fold runs of the train and evaluate stages and
the report run (package docstring: processes, parents, run keys)."""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException

from ultradet.experiment_log.layout import (
    DEFAULT_RUN_KEY,
    config_fingerprint,
    TAG_MODEL,
    TAG_ROLE,
    TAG_RUN_KEY,
    create_child_run,
    get_or_create_parent_run,
)
from ultradet.experiment_log.keys import as_tags
from ultradet.experiment_log.provenance import device_of, standard_tags
from ultradet.experiment_log.run import TrackedRun
from ultradet.experiment_log.store import (
    DEFAULT_EXPERIMENT,
    check_tracking_server,
    get_or_create_experiment,
    resolve_tracking_uri,
)
from ultradet.layout import fold_run_name


class PipelineTracker:
    """The pipeline's experiment in one tracking store; opens fold and report runs.

    Args:
        uri: tracking URI (see :func:`resolve_tracking_uri`).
        experiment: experiment name, e.g. ``"ultradet-pipeline"``.
        run_key: separates the parents of independent pipeline runs (module docstring).
        check: probe the store first (:func:`check_tracking_server`).

    Raises:
        TrackingUnavailableError: ``check`` is true and the store is unusable.
    """

    def __init__(self, uri: str, experiment: str, *, run_key: str = DEFAULT_RUN_KEY, check: bool = True):
        if check:
            check_tracking_server(uri)
        self.uri, self.experiment, self.run_key = uri, experiment, run_key
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = get_or_create_experiment(self.client, experiment)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "PipelineTracker":
        """Build from the ``tracking:`` section of params.yaml: ``uri`` (overridden by
        ``$MLFLOW_TRACKING_URI``), ``experiment`` (default :data:`DEFAULT_EXPERIMENT`), optional
        ``run_key`` (default ``$DVC_EXP_NAME`` or ``"default"``). Probes the store first.

        Raises:
            TrackingUnavailableError: the store is unreachable or not writable.
        """
        run_key = params.get("run_key") or os.environ.get("DVC_EXP_NAME") or DEFAULT_RUN_KEY
        return cls(
            resolve_tracking_uri(params.get("uri")),
            params.get("experiment", DEFAULT_EXPERIMENT),
            run_key=str(run_key),
        )

    def parent_run_id(self, model: str, cfg: Any = None) -> str:
        """The id of ``model``'s parent run for this tracker's ``run_key`` (created once).

        With ``cfg`` (the resolved config), the parent of exactly that config: its fingerprint
        is part of the parent's tags and the config is logged as the parent's params, so a
        changed config opens a new parent and the UI's compare view never mixes two configs.
        """
        config_hash = config_fingerprint(cfg) if cfg is not None else None
        run_id = get_or_create_parent_run(
            self.client, self.experiment_id, model, run_key=self.run_key, config_hash=config_hash, tags=standard_tags()
        )
        if cfg is not None:
            TrackedRun(self.client, run_id).log_config(cfg)  # idempotent: same config, same values
        return run_id

    def log_fold_summary(self, model: str, cfg: Any, stats: Mapping[str, Mapping[str, Any]]) -> str:
        """Log the fold statistics of the results table onto ``model``'s parent run (of ``cfg``).

        Args:
            stats: ``{metric: {"mean", "sd", "se", "n", "ci_low", "ci_high"}}`` in table units
                (``summary.json``); logged as metrics ``<metric>`` (the mean), ``<metric>_sd``,
                ``<metric>_se``, ``<metric>_n``, ``<metric>_ci_low`` and ``<metric>_ci_high`` at
                step 0 (a later report's values supersede them); ``None`` (undefined, e.g. the sd
                of one fold) is left out.

        Returns:
            The parent run's id.
        """
        run_id = self.parent_run_id(model, cfg)
        suffixes = (("", "mean"), ("_sd", "sd"), ("_se", "se"), ("_n", "n"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))
        values = {f"{metric}{suffix}": entry.get(stat) for metric, entry in stats.items() for suffix, stat in suffixes}
        TrackedRun(self.client, run_id).log_metrics_step(values, step=0)
        return run_id

    @contextmanager
    def fold_run(
        self,
        *,
        model: str,
        fold: int,
        stage: str,
        cfg: Any = None,
        resume_from: str | Path | None = None,
    ) -> Iterator[TrackedRun]:
        """Open the child run of (``model``, ``fold``) for ``stage``; finished on exit (FAILED
        if the block raises, and the exception propagates).

        A new child is created under the model's parent unless ``resume_from`` names a
        ``mlflow_run.json`` (``{"run_id": ...}``, written by the train stage) whose run exists in
        this store, in which case that run is reopened. ``cfg`` (if given) is logged as params.
        """
        device = device_of(cfg) if cfg is not None else None
        tags = {**standard_tags(stage=stage, fold=fold, device=device), TAG_ROLE: "fold", TAG_MODEL: model}
        run_id = self._resumable(resume_from)
        if run_id is None:
            run_id = create_child_run(
                self.client, self.parent_run_id(model, cfg), run_name=fold_run_name(model, fold), tags=tags
            )
        else:
            self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        run = TrackedRun(self.client, run_id)
        run.set_tags(tags)
        if cfg is not None:
            run.log_config(cfg)
        with self._finishing(run):
            yield run

    @contextmanager
    def report_run(self, tags: Mapping[str, Any] | None = None) -> Iterator[TrackedRun]:
        """Open a new top-level run tagged ``ultradet.role=report`` for this ``run_key``."""
        all_tags = {**standard_tags(stage="report"), **as_tags(tags or {}), TAG_ROLE: "report", TAG_RUN_KEY: self.run_key}
        run = TrackedRun(self.client, self.client.create_run(self.experiment_id, run_name="report", tags=all_tags).info.run_id)
        with self._finishing(run):
            yield run

    def _resumable(self, resume_from: str | Path | None) -> str | None:
        if resume_from is None or not Path(resume_from).is_file():
            return None
        run_id = json.loads(Path(resume_from).read_text()).get("run_id")
        try:
            self.client.get_run(run_id)
        except MlflowException:
            warnings.warn(f"{resume_from}: run {run_id} is not in {self.uri}; starting a new child run")
            return None
        return run_id

    @contextmanager
    def _finishing(self, run: TrackedRun) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.client.set_terminated(run.run_id, RunStatus.to_string(RunStatus.FAILED))
            raise
        self.client.set_terminated(run.run_id, RunStatus.to_string(RunStatus.FINISHED))
