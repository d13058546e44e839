"""The tracking store: which URI to use, probing it before any work, and the experiment."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ultradet.errors import UserError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
# The pipeline's experiment when params.yaml names none (tracking.experiment); searches log into
# "<experiment>-tune".
DEFAULT_EXPERIMENT = "ultradet-pipeline"


class TrackingUnavailableError(UserError, RuntimeError):
    """The tracking store cannot be reached or written; the message names the URI and the fix."""


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


def absolute_uri(uri: str) -> str:
    """Make a relative ``sqlite:///file.db`` absolute: Ray runs trials and Train workers in
    folders of their own."""
    path = sqlite_path(uri) if uri.startswith("sqlite:") else None
    if path is None or path.is_absolute():
        return uri
    return f"sqlite:///{path.resolve()}"


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
