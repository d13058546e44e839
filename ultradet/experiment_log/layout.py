"""Where runs live in the tracking store: the tags that find them again, and run lookup.

Layout in the tracking store::

    experiment  <tracking.experiment>                 e.g. "ultradet-pipeline"
      parent    tags ultradet.role=parent, ultradet.model=<name>, ultradet.run_key=<key>,
                ultradet.config_hash=<config_fingerprint of the resolved config>
        child   tags ultradet.role=fold, ultradet.fold=<k>, mlflow.parentRunId=<parent id>
      report    tags ultradet.role=report, ultradet.run_key=<key>
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from mlflow import MlflowClient
from mlflow.entities import RunStatus

from ultradet.experiment_log.keys import as_tags

DEFAULT_RUN_KEY = "default"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag (the UI draws the tree from it)
TAG_ROLE, TAG_MODEL, TAG_FOLD, TAG_RUN_KEY, TAG_STAGE, TAG_CONFIG = (
    "ultradet.role",
    "ultradet.model",
    "ultradet.fold",
    "ultradet.run_key",
    "ultradet.stage",
    "ultradet.config_hash",
)


def config_fingerprint(cfg: Any) -> str:
    """First 12 hex digits of the sha256 of a config's canonical JSON (pydantic model or mapping;
    keys sorted), so that equal configs, however loaded, share one parent run."""
    data = cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else cfg
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


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
    config_hash: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> str:
    """The id of the parent run of ``model_name`` under ``run_key`` (and, if given, of the config
    with fingerprint ``config_hash``), created on first use.

    Safe across processes: if two create a parent at once, both settle on the oldest one and the
    newer duplicate is deleted.
    """
    key = {TAG_ROLE: "parent", TAG_MODEL: model_name, TAG_RUN_KEY: run_key}
    if config_hash is not None:
        key[TAG_CONFIG] = config_hash
    found = _find_runs(client, experiment_id, key)
    if found:
        return found[0].info.run_id
    all_tags = {**as_tags(tags or {}), **key}
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
    all_tags = {**as_tags(tags or {}), PARENT_TAG: parent_run_id}
    return client.create_run(parent.info.experiment_id, run_name=run_name, tags=all_tags).info.run_id
