"""The searches' view of the store (``ultradet.tuning``): a parent run per search and a child run
per trial, in the same tracking store as the DVC pipeline (experiment ``<tracking.experiment>-tune``).

Ray Tune's own MLflow callback does not nest runs, so the trial sets ``mlflow.parentRunId``
itself (through :func:`~ultradet.experiment_log.layout.create_child_run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from mlflow import MlflowClient
from mlflow.entities import RunStatus

from ultradet.experiment_log.hook import MLflowHook
from ultradet.experiment_log.layout import PARENT_TAG, create_child_run
from ultradet.experiment_log.provenance import standard_tags
from ultradet.experiment_log.run import TrackedRun
from ultradet.experiment_log.store import (
    DEFAULT_EXPERIMENT,
    absolute_uri,
    check_tracking_server,
    get_or_create_experiment,
    resolve_tracking_uri,
)


@dataclass
class SearchRun:
    """The parent run of one search."""

    client: MlflowClient
    uri: str
    run_id: str

    @classmethod
    def start(cls, params: Mapping[str, Any], *, name: str, space, args: Mapping[str, Any], state_dir: Path) -> "SearchRun":
        """Create the search's parent run (tags ``ultradet.role=search``, the space file) and log
        the command-line options as params; or, when ``state_dir/mlflow_parent.json`` names a run
        of this store (a resumed search), reopen that one so every trial stays under one parent.

        Raises:
            TrackingUnavailableError: the store named by params / ``$MLFLOW_TRACKING_URI`` is unusable.
        """
        uri = absolute_uri(resolve_tracking_uri(params.get("uri")))
        check_tracking_server(uri)
        client = MlflowClient(tracking_uri=uri)
        state = Path(state_dir) / "mlflow_parent.json"
        if state.is_file():
            run_id = json.loads(state.read_text())["run_id"]
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            return cls(client, uri, run_id)
        experiment_id = get_or_create_experiment(client, f"{params.get('experiment', DEFAULT_EXPERIMENT)}-tune")
        tags = {**standard_tags(stage="tune"), "ultradet.role": "search", "ultradet.search_space": str(space.path)}
        run_id = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        run = TrackedRun(client, run_id)
        run.log_config({"search": {k: str(v) for k, v in args.items()}})
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"run_id": run_id, "tracking_uri": uri}))
        return cls(client, uri, run_id)

    def finish(self, *, best: Mapping[str, Any], artifacts: Iterable[Path], num_errors: int, max_iter: int) -> None:
        """Log the best values (as ``best.<key>`` params), the result files, and close the run and
        any trial run left open (see :meth:`_close_stopped_trials`; ``max_iter``: a trial's length)."""
        run = TrackedRun(self.client, self.run_id)
        run.log_config({"best": dict(best)})
        run.log_metrics_step({"errored_trials": num_errors}, step=0)
        run.log_artifacts(artifacts)
        self._close_stopped_trials(max_iter)
        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED))

    def _close_stopped_trials(self, max_iter: int) -> None:
        """Close the trial runs that Tune ended before they could close themselves: ASHA stops a
        trial mid-function, and a data-parallel trial can be killed at its last evaluation before
        its own ``finally`` runs. A run whose last validation is at ``max_iter`` is a complete
        trial (FINISHED); any other was stopped early (KILLED)."""
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        running = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.run_id}' and attributes.status = 'RUNNING'",
        )
        for trial in running:
            self.client.set_terminated(trial.info.run_id, stopped_trial_status(trial.data.metrics, max_iter))


def stopped_trial_status(metrics: Mapping[str, float], max_iter: int) -> str:
    """MLflow status of a trial run that Tune ended (``metrics``: the run's latest values):
    ``FINISHED`` when its last validation (``val/iteration``) is at ``max_iter``, i.e. Tune ended a
    complete trial, else ``KILLED`` (stopped early)."""
    complete = metrics.get("val/iteration") == max_iter
    return RunStatus.to_string(RunStatus.FINISHED if complete else RunStatus.KILLED)


class TrialRun:
    """The child run of one trial: sampled params, full config, loss and validation curves."""

    def __init__(self, run: TrackedRun):
        self.run = run
        self.losses = MLflowHook(run, flush_every=20)

    @classmethod
    def start(cls, *, uri: str, parent_run_id: str, trial_id: str, trial_name: str, sampled: dict, cfg) -> "TrialRun":
        client = MlflowClient(tracking_uri=uri)
        run_id = create_child_run(
            client, parent_run_id, run_name=trial_name,
            tags={**standard_tags(stage="tune"), "ultradet.role": "trial", "ultradet.trial_id": trial_id},
        )
        run = TrackedRun(client, run_id)
        run.log_config(cfg)
        run.set_tags({f"searched.{k}": v for k, v in sampled.items()})
        return cls(run)

    def log_losses(self, iteration: int, losses: Mapping[str, float], lr: float) -> None:
        self.losses.after_step(iteration, losses, lr)

    def log_validation(self, iteration: int, metrics: Mapping[str, Any]) -> None:
        self.losses.flush()
        self.run.log_metrics_step({f"val/{k}": v for k, v in metrics.items()}, step=iteration)

    def stopped_status(self, max_iter: int) -> str:
        """:func:`stopped_trial_status` of this run, from what any process logged to it."""
        return stopped_trial_status(self.run.client.get_run(self.run.run_id).data.metrics, max_iter)

    def end(self, *, status: str = "FINISHED") -> None:
        """Flush and close with MLflow status ``FINISHED``, ``FAILED`` or ``KILLED`` (stopped early)."""
        self.losses.flush()
        self.run.client.set_terminated(self.run.run_id, status)
