"""MLflow logging of the pipeline: one experiment, a parent run per model, a child run per fold.
(Experiment tracking, not object tracking: nothing here follows lesions across frames.)

Used by ``pipelines/``, ``ultradet.tuning`` and ``ultradet.predict`` only; lower layers never
import it (the trainer sees a duck-typed hook). One job per module:

- ``store``: which tracking URI, probing it before any work, the experiment;
- ``layout``: the tags that place a run (parent, fold child, report) and finding runs by them;
- ``provenance``: git commit, DVC stage, device and version tags;
- ``keys``: names and values MLflow accepts (sanitised keys, bounded values, batches);
- ``run``: :class:`TrackedRun`, logging into one run through an explicit client;
- ``hook``: :class:`MLflowHook`, the trainer hook logging loss curves;
- ``pipeline``: :class:`PipelineTracker`, the stages' view (fold and report runs);
- ``search``: :class:`SearchRun` and :class:`TrialRun`, the searches' view (``ultradet.tuning``).
- ``model``: a fold's trained detector as an MLflow model, logged and loaded by URI (imported by
  name, ``ultradet.experiment_log.model``: it needs torch, which the report stage does not).

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

from ultradet.experiment_log.hook import MLflowHook
from ultradet.experiment_log.keys import sanitize_key
from ultradet.experiment_log.layout import (
    DEFAULT_RUN_KEY,
    PARENT_TAG,
    TAG_CONFIG,
    TAG_FOLD,
    TAG_MODEL,
    TAG_ROLE,
    TAG_RUN_KEY,
    TAG_STAGE,
    config_fingerprint,
    create_child_run,
    get_or_create_parent_run,
)
from ultradet.experiment_log.pipeline import PipelineTracker
from ultradet.experiment_log.provenance import git_commit, standard_tags
from ultradet.experiment_log.run import TrackedRun
from ultradet.experiment_log.search import SearchRun, TrialRun, stopped_trial_status
from ultradet.experiment_log.store import (
    DEFAULT_EXPERIMENT,
    DEFAULT_TRACKING_URI,
    TrackingUnavailableError,
    absolute_uri,
    check_tracking_server,
    get_or_create_experiment,
    resolve_tracking_uri,
    sqlite_path,
)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "DEFAULT_RUN_KEY",
    "DEFAULT_TRACKING_URI",
    "MLflowHook",
    "PARENT_TAG",
    "PipelineTracker",
    "SearchRun",
    "TAG_CONFIG",
    "TAG_FOLD",
    "TAG_MODEL",
    "TAG_ROLE",
    "TAG_RUN_KEY",
    "TAG_STAGE",
    "TrackedRun",
    "TrackingUnavailableError",
    "TrialRun",
    "absolute_uri",
    "check_tracking_server",
    "config_fingerprint",
    "create_child_run",
    "get_or_create_experiment",
    "get_or_create_parent_run",
    "git_commit",
    "resolve_tracking_uri",
    "sanitize_key",
    "sqlite_path",
    "standard_tags",
    "stopped_trial_status",
]
