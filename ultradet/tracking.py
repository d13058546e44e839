"""MLflow glue for the pipeline stages: one experiment, a parent run per model, a child run per fold.

Used by ``pipelines/`` only; lower layers never import it (the trainer sees a duck-typed hook).

Layout in the tracking store::

    experiment  <tracking.experiment>                 e.g. "ultradet-pipeline"
      parent    tags ultradet.role=parent, ultradet.model=<name>, ultradet.run_key=<key>
        child   tags ultradet.role=fold, ultradet.fold=<k>, mlflow.parentRunId=<parent id>
      report    tags ultradet.role=report, ultradet.run_key=<key>

DVC runs every (model, fold) stage in its own process, so nothing is shared in memory: the parent
is found again by its tags (or created once), the train stage creates the fold's child and writes
its id to ``runs/<model>/fold<k>/mlflow_run.json``, and the evaluate stage logs into that same
child. A re-run of the train stage creates a *new* child under the same parent (the old one keeps
the history of the earlier attempt); parents are never duplicated. ``run_key`` separates parents
of independent pipeline runs: ``tracking.run_key`` in params, else ``$DVC_EXP_NAME`` (set by
``dvc exp run``), else ``"default"``.

Everything goes through an explicit :class:`mlflow.MlflowClient` and run ids, never the fluent
API's global "active run", so hooks, stages and Ray workers cannot log into each other's runs.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from ultradet.config import flatten
from ultradet.errors import UserError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_RUN_KEY = "default"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag (the UI draws the tree from it)
TAG_ROLE, TAG_MODEL, TAG_FOLD, TAG_RUN_KEY, TAG_STAGE = (
    "ultradet.role",
    "ultradet.model",
    "ultradet.fold",
    "ultradet.run_key",
    "ultradet.stage",
)


class TrackingUnavailableError(UserError, RuntimeError):
    """The tracking store cannot be reached or written; the message names the URI and the fix."""


# ------------------------------------------------------------------------------------ the store
def resolve_tracking_uri(params_uri: str | None = None) -> str:
    """The tracking URI to use: ``$MLFLOW_TRACKING_URI`` if set, else ``params_uri``, else
    ``sqlite:///mlflow.db`` (a file relative to the working directory, i.e. the repository root
    when DVC runs a stage)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or params_uri or DEFAULT_TRACKING_URI


def check_tracking_server(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast, before any training, when the tracking store is unusable.

    ``http(s)://`` URIs must answer ``GET <uri>/health`` within ``timeout_s`` seconds;
    ``sqlite:///path`` (and plain-path file stores) must have a writable directory. Other schemes
    (postgresql, databricks, ...) are not probed.

    Raises:
        TrackingUnavailableError: naming ``uri``, the reason and what to do.
    """
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ("http", "https"):
        _check_http(uri, timeout_s)
    elif scheme == "sqlite":
        path = sqlite_path(uri)
        if path is not None:
            _check_writable(uri, path.parent, path)
    elif scheme in ("", "file"):
        directory = Path(urllib.parse.urlparse(uri).path if scheme else uri)
        _check_writable(uri, directory if directory.exists() else directory.parent, None)


def _check_http(uri: str, timeout_s: float) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        reason = str(getattr(exc, "reason", exc))
    raise TrackingUnavailableError(
        f"MLflow tracking server {uri} is not reachable ({url}: {reason}). Start it (e.g. "
        f"`mlflow server --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000`), "
        f"or point MLFLOW_TRACKING_URI / tracking.uri in params.yaml at a running server or at "
        f"{DEFAULT_TRACKING_URI}."
    )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:`` URI: ``sqlite:///rel.db`` -> ``rel.db``,
    ``sqlite:////abs.db`` -> ``/abs.db``; in-memory -> None."""
    path = uri[len("sqlite://") :]
    if path in ("", "/", "/:memory:"):
        return None
    return Path(path[1:] if path.startswith("/") else path)


def _check_writable(uri: str, directory: Path, file: Path | None) -> None:
    if not directory.is_dir():
        problem = f"directory {directory} does not exist"
    elif not os.access(directory, os.W_OK | os.X_OK):
        problem = f"directory {directory} is not writable"
    elif file is not None and file.exists() and not os.access(file, os.W_OK):
        problem = f"database {file} is not writable"
    else:
        return
    raise TrackingUnavailableError(
        f"MLflow tracking store {uri} cannot be written: {problem}. Create it or fix its "
        f"permissions, or set MLFLOW_TRACKING_URI / tracking.uri in params.yaml to another store."
    )


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a sqlite store go beside the database (``<db dir>/mlartifacts``, as
    ``mlflow server`` does), not into the working directory; servers choose their own."""
    path = sqlite_path(uri) if uri.startswith("sqlite:") else None
    return (path.resolve().parent / "mlartifacts").as_uri() if path is not None else None


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a sqlite database) if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=_artifact_location(client.tracking_uri))
    except MlflowException:
        # Another stage process created it between our lookup and create.
        return client.get_experiment_by_name(name).experiment_id


# ----------------------------------------------------------------------------------- run lookup
def _quote(value: str) -> str:
    if "'" in value:
        raise ValueError(f"tag value {value!r} must not contain a single quote (MLflow filter syntax)")
    return f"'{value}'"


def _find_runs(client: MlflowClient, experiment_id: str, tags: Mapping[str, str]) -> list:
    """Active runs carrying all ``tags``, oldest first (ties broken by run id, deterministically)."""
    where = " and ".join(f"tags.`{k}` = {_quote(str(v))}" for k, v in tags.items())
    runs = client.search_runs([experiment_id], filter_string=where, max_results=1000)
    return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def get_or_create_parent_run(
    client: MlflowClient,
    experiment_id: str,
    model_name: str,
    *,
    run_key: str = DEFAULT_RUN_KEY,
    tags: Mapping[str, Any] | None = None,
) -> str:
    """The id of the parent run of ``model_name`` under ``run_key``, created on first use.

    Safe across processes: if two create a parent at once, both settle on the oldest one and the
    newer duplicate is deleted.
    """
    key = {TAG_ROLE: "parent", TAG_MODEL: model_name, TAG_RUN_KEY: run_key}
    found = _find_runs(client, experiment_id, key)
    if found:
        return found[0].info.run_id
    all_tags = {**_as_tags(tags or {}), **key}
    run = client.create_run(experiment_id, run_name=model_name, tags=all_tags)
    # A parent only groups its folds: finish it now rather than leave it "running" forever.
    client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FINISHED))
    oldest = _find_runs(client, experiment_id, key)[0].info.run_id
    if oldest != run.info.run_id:
        client.delete_run(run.info.run_id)
    return oldest


def create_child_run(
    client: MlflowClient,
    parent_run_id: str,
    *,
    run_name: str,
    tags: Mapping[str, Any] | None = None,
) -> str:
    """Create a run nested under ``parent_run_id`` (same experiment, ``mlflow.parentRunId`` set)
    and return its id."""
    parent = client.get_run(parent_run_id)
    all_tags = {**_as_tags(tags or {}), PARENT_TAG: parent_run_id}
    return client.create_run(parent.info.experiment_id, run_name=run_name, tags=all_tags).info.run_id


# ----------------------------------------------------------------------------------------- tags
def _as_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v)[:MAX_TAG_VAL_LENGTH] for k, v in tags.items() if v is not None}


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the working directory's repository, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _device_of(cfg: Any) -> str:
    # Imported here: the report stage uses this module without needing torch.
    from ultradet.engine.runtime import resolve_device

    return str(resolve_device(getattr(cfg, "device", "auto")))


def standard_tags(*, stage: str | None = None, fold: int | None = None, device: str | None = None) -> dict[str, str]:
    """Provenance tags: git commit, DVC stage (``$DVC_STAGE`` when DVC runs us), device,
    torch/torchvision versions, fold, Python version. ``None`` values are left out."""
    tags = {
        "mlflow.source.git.commit": git_commit(),
        TAG_STAGE: stage,
        "dvc.stage": os.environ.get("DVC_STAGE"),
        TAG_FOLD: fold,
        "device": device,
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "python": sys.version.split()[0],
    }
    return _as_tags(tags)


# ------------------------------------------------------------------------------------- logging
_BAD_KEY_CHARS = re.compile(r"[^\w.\- /]")


def sanitize_key(name: str) -> str:
    """A metric/param name MLflow accepts on every OS: characters other than letters, digits,
    ``_ - . /`` and space become ``_`` (``"P@R0.8"`` -> ``"P_R0.8"``), empty/``.``/``..`` path
    segments are dropped, and the result is cut to MLflow's 250-character limit."""
    parts = [p for p in _BAD_KEY_CHARS.sub("_", name).split("/") if p not in ("", ".", "..")]
    return posixpath.join(*parts)[:MAX_ENTITY_KEY_LENGTH] if parts else "_"


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, tuple, dict)) or value is None else str(value)
    if len(text) > MAX_PARAM_VAL_LENGTH:  # MLflow rejects longer values; keep a visible marker
        text = text[: MAX_PARAM_VAL_LENGTH - 3] + "..."
    return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class TrackedRun:
    """One MLflow run, logged to through an explicit client (no global active run)."""

    client: MlflowClient
    run_id: str

    def log_config(self, cfg: Any) -> None:
        """Log a config (pydantic model or nested mapping) as flattened params
        (``model.roi_heads.interval_pre_test``); lists as JSON, values cut to 6000 characters.

        Raises:
            MlflowException: a param already logged in this run with a different value.
        """
        params = [Param(sanitize_key(k), _param_value(v)) for k, v in flatten(cfg).items()]
        for chunk in _chunks(params, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=chunk)

    def log_metrics_step(self, metrics: Mapping[str, float], step: int) -> None:
        """Log numeric ``metrics`` at ``step`` in one request (names sanitized, non-numbers skipped)."""
        self._log_metrics([_metric(k, v, step) for k, v in metrics.items() if _is_number(v)])

    def log_eval_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Log an evaluation's ``metrics.json`` dict at step 0; ``None``/non-numeric values
        (e.g. an undefined threshold) are skipped, NaN is kept (MLflow stores it)."""
        self.log_metrics_step(metrics, step=0)

    def _log_metrics(self, metrics: list[Metric]) -> None:
        for chunk in _chunks(metrics, MAX_METRICS_PER_BATCH):
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
        entities = [RunTag(k, v) for k, v in _as_tags(tags).items()]
        for chunk in _chunks(entities, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=chunk)

    def loss_hook(self, flush_every: int = 50, prefix: str = "train/") -> "MLflowHook":
        """A trainer hook that logs this run's loss curves (see :class:`MLflowHook`)."""
        return MLflowHook(self, flush_every=flush_every, prefix=prefix)


def _metric(name: str, value: float, step: int) -> Metric:
    return Metric(sanitize_key(name), float(value), int(time.time() * 1000), int(step))


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
        self._buffer += [_metric(self.prefix + k, v, iteration) for k, v in values.items()]
        if iteration % self.flush_every == 0:
            self.flush()

    def flush(self) -> None:
        """Send the buffered metrics now."""
        buffer, self._buffer = self._buffer, []
        try:
            self.run._log_metrics(buffer)
        except (MlflowException, OSError) as exc:
            warnings.warn(f"MLflow: dropped {len(buffer)} loss values of run {self.run.run_id}: {exc}")

    def after_train(self) -> None:
        """Send what is left."""
        self.flush()


# ----------------------------------------------------------------------------- the pipeline view
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
        ``$MLFLOW_TRACKING_URI``), ``experiment`` (default ``ultradet-pipeline``), optional
        ``run_key`` (default ``$DVC_EXP_NAME`` or ``"default"``). Probes the store first.

        Raises:
            TrackingUnavailableError: the store is unreachable or not writable.
        """
        run_key = params.get("run_key") or os.environ.get("DVC_EXP_NAME") or DEFAULT_RUN_KEY
        return cls(
            resolve_tracking_uri(params.get("uri")),
            params.get("experiment", "ultradet-pipeline"),
            run_key=str(run_key),
        )

    def parent_run_id(self, model: str) -> str:
        """The id of ``model``'s parent run for this tracker's ``run_key`` (created once)."""
        return get_or_create_parent_run(
            self.client, self.experiment_id, model, run_key=self.run_key, tags=standard_tags()
        )

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
        device = _device_of(cfg) if cfg is not None else None
        tags = {**standard_tags(stage=stage, fold=fold, device=device), TAG_ROLE: "fold", TAG_MODEL: model}
        run_id = self._resumable(resume_from)
        if run_id is None:
            run_id = create_child_run(
                self.client, self.parent_run_id(model), run_name=f"{model}-fold{fold}", tags=tags
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
        all_tags = {**standard_tags(stage="report"), **_as_tags(tags or {}), TAG_ROLE: "report", TAG_RUN_KEY: self.run_key}
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
