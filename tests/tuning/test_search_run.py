"""The search's parent run closes the trial runs that Tune ended before they closed themselves."""

from mlflow import MlflowClient

from ultradet import experiment_log
from ultradet.experiment_log import SearchRun


class _Space:
    path = "space.yaml"


def test_open_trials_are_closed_by_how_far_they_got(tmp_path):
    params = {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "t"}
    search = SearchRun.start(params, name="s", space=_Space(), args={}, state_dir=tmp_path / "state")
    client = MlflowClient(tracking_uri=search.uri)
    trials = {}
    for name, last_validation in (("complete", 8), ("stopped", 4), ("never_validated", None)):
        run_id = experiment_log.create_child_run(client, search.run_id, run_name=name)
        if last_validation is not None:
            client.log_metric(run_id, "val/iteration", last_validation, step=last_validation)
        trials[name] = run_id
    closed = experiment_log.create_child_run(client, search.run_id, run_name="closed")
    client.log_metric(closed, "val/iteration", 4, step=4)
    client.set_terminated(closed, "FAILED")  # a trial that closed itself keeps its status
    artifact = tmp_path / "top_k.csv"
    artifact.write_text("a\n1\n")

    search.finish(best={"x": 1}, artifacts=[artifact], num_errors=0, max_iter=8)

    status = {name: client.get_run(run_id).info.status for name, run_id in trials.items()}
    assert status == {"complete": "FINISHED", "stopped": "KILLED", "never_validated": "KILLED"}
    assert client.get_run(closed).info.status == "FAILED"
    assert client.get_run(search.run_id).info.status == "FINISHED"


def test_search_without_an_experiment_name_logs_beside_the_pipeline_default(tmp_path, monkeypatch):
    # params.yaml tracking.experiment unset: the pipeline and its searches share one default.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    search = SearchRun.start(params, name="s", space=_Space(), args={}, state_dir=tmp_path / "state")
    pipeline = experiment_log.PipelineTracker.from_params(params)
    assert pipeline.experiment == experiment_log.DEFAULT_EXPERIMENT == "ultradet-pipeline"
    experiment_id = search.client.get_run(search.run_id).info.experiment_id
    assert search.client.get_experiment(experiment_id).name == f"{experiment_log.DEFAULT_EXPERIMENT}-tune"
