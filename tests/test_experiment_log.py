"""ultradet.experiment_log against a real sqlite store (one per module: creating one takes ~1.5 s) and,
marked slow, against a real ``mlflow server`` subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ultradet import experiment_log
from ultradet.config import ExperimentConfig

# MLflow 3.17's sqlite store uses a sqlalchemy option deprecated upstream; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def tracker(store, request) -> experiment_log.PipelineTracker:
    # One experiment per test keeps tests independent while sharing the (slow to create) store.
    return experiment_log.PipelineTracker(store, f"exp-{request.node.name}")


def children_of(tracker, parent_id):
    return tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'"
    )


def test_env_var_overrides_params_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert experiment_log.resolve_tracking_uri(None) == "sqlite:///mlflow.db"
    assert experiment_log.resolve_tracking_uri("http://x:1") == "http://x:1"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///other.db")
    assert experiment_log.resolve_tracking_uri("http://x:1") == "sqlite:///other.db"


def test_unreachable_server_fails_fast():
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(experiment_log.TrackingUnavailableError, match=uri):
        experiment_log.check_tracking_server(uri, timeout_s=4)
    assert time.monotonic() - start < 5


def test_unwritable_sqlite_directory_fails(tmp_path):
    experiment_log.check_tracking_server(f"sqlite:///{tmp_path}/ok.db")
    with pytest.raises(experiment_log.TrackingUnavailableError, match="does not exist"):
        experiment_log.check_tracking_server(f"sqlite:///{tmp_path}/missing/mlflow.db")


def test_folds_nest_under_one_parent(tracker):
    ids = []
    for fold in (0, 1):
        with tracker.fold_run(model="ultradet", fold=fold, stage="train") as run:
            ids.append(run.run_id)
    parent_id = tracker.parent_run_id("ultradet")
    for fold, run_id in enumerate(ids):
        tags = tracker.client.get_run(run_id).data.tags
        assert tags["mlflow.parentRunId"] == parent_id
        assert tags["ultradet.fold"] == str(fold) and tags["ultradet.role"] == "fold"
    parents = tracker.client.search_runs([tracker.experiment_id], "tags.`ultradet.role` = 'parent'")
    assert [p.info.run_id for p in parents] == [parent_id]
    # A second pipeline key gets its own parent; the first one is untouched.
    other = experiment_log.PipelineTracker(tracker.uri, tracker.experiment, run_key="exp-2")
    assert other.parent_run_id("ultradet") != parent_id


def test_parent_per_config_carries_params_and_fold_summary(tracker):
    a, b = ExperimentConfig(name="m"), ExperimentConfig(name="m", seed=1)
    for fold in (0, 1):
        with tracker.fold_run(model="m", fold=fold, stage="train", cfg=a):
            pass
    parent_a = tracker.parent_run_id("m", a)
    assert len(children_of(tracker, parent_a)) == 2
    with tracker.fold_run(model="m", fold=0, stage="train", cfg=b) as other:
        pass
    parent_b = tracker.client.get_run(other.run_id).data.tags["mlflow.parentRunId"]
    assert parent_b != parent_a  # a changed config opens a new parent: compare never mixes configs
    stats = {"AP50": {"mean": 61.5, "sd": 2.0, "se": 1.0, "n": 4}, "FP80": {"mean": 3.25, "sd": None, "se": None, "n": 1}}
    assert tracker.log_fold_summary("m", a, stats) == parent_a
    parent = tracker.client.get_run(parent_a).data
    assert parent.metrics == {"AP50": 61.5, "AP50_sd": 2.0, "AP50_se": 1.0, "AP50_n": 4, "FP80": 3.25, "FP80_n": 1}
    assert parent.params["seed"] == "0" and parent.params["model.temporal.interval_pre_test"] == "15"
    assert tracker.client.get_run(parent_b).data.params["seed"] == "1"
    assert parent.tags["ultradet.config_hash"] == experiment_log.config_fingerprint(a.model_dump(mode="json"))
    # The report stage updates: a later summary supersedes the shown value.
    tracker.log_fold_summary("m", a, {"AP50": {"mean": 70.0, "sd": 1.0, "se": 0.5, "n": 4}})
    assert tracker.client.get_run(parent_a).data.metrics["AP50"] == 70.0


def test_rerun_adds_child_and_resume_reopens_it(tracker, tmp_path):
    with tracker.fold_run(model="m", fold=0, stage="train") as first:
        (tmp_path / "mlflow_run.json").write_text(json.dumps({"run_id": first.run_id}))
    with tracker.fold_run(model="m", fold=0, stage="evaluate", resume_from=tmp_path / "mlflow_run.json") as resumed:
        resumed.log_eval_metrics({"AP50": 0.5})
    with tracker.fold_run(model="m", fold=0, stage="train") as rerun:
        pass
    assert resumed.run_id == first.run_id != rerun.run_id
    assert len(children_of(tracker, tracker.parent_run_id("m"))) == 2
    finished = tracker.client.get_run(first.run_id)
    assert finished.info.status == "FINISHED" and finished.data.tags["ultradet.stage"] == "evaluate"


def test_failed_block_marks_run_failed(tracker):
    with pytest.raises(RuntimeError):
        with tracker.fold_run(model="m", fold=0, stage="train") as run:
            raise RuntimeError("boom")
    assert tracker.client.get_run(run.run_id).info.status == "FAILED"


def test_config_logged_as_flat_params_and_standard_tags(tracker):
    cfg = ExperimentConfig(device="cpu")
    with tracker.fold_run(model="ultradet", fold=2, stage="train", cfg=cfg) as run:
        pass
    data = tracker.client.get_run(run.run_id).data
    assert data.params["model.temporal.interval_pre_test"] == "15"
    assert data.params["model.rpn.anchor_sizes"] == "[32.0, 64.0, 128.0, 256.0, 512.0]"
    assert data.params["model.backbone.weights"] == "null"
    assert data.tags["device"] == "cpu" and data.tags["ultradet.stage"] == "train"
    assert data.tags["mlflow.source.git.commit"]  # the tests run inside the repository


def test_loss_hook_logs_every_iteration(tracker):
    with tracker.fold_run(model="m", fold=0, stage="train") as run:
        hook = experiment_log.MLflowHook(run, flush_every=3)
        for it in range(1, 8):
            hook.after_step(it, {"loss_cls": 1.0 / it, "loss_box_reg": 0.5}, lr=1e-3)
        hook.after_train()
    history = tracker.client.get_metric_history(run.run_id, "train/loss_total")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, 8))
    assert sorted(history, key=lambda m: m.step)[1].value == pytest.approx(0.5 + 0.5)
    assert len(tracker.client.get_metric_history(run.run_id, "train/lr")) == 7


def test_eval_metrics_sanitized_and_artifacts_uploaded(tracker, tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "pr.png").write_bytes(b"png")
    with tracker.fold_run(model="m", fold=0, stage="evaluate") as run:
        run.log_eval_metrics({"AP50": 0.9, "R@16": 0.8, "thr70": None, "num_videos": 3})
        run.log_artifacts([tmp_path / "metrics.json", tmp_path / "plots"])
        with pytest.raises(FileNotFoundError, match="nope.json"):
            run.log_artifacts([tmp_path / "nope.json"])
    metrics = tracker.client.get_run(run.run_id).data.metrics
    assert metrics == {"AP50": 0.9, "R_16": 0.8, "num_videos": 3.0}
    names = {a.path for a in tracker.client.list_artifacts(run.run_id)}
    assert names == {"metrics.json", "plots"}
    assert [a.path for a in tracker.client.list_artifacts(run.run_id, "plots")] == ["plots/pr.png"]
    # sqlite stores keep artifacts beside the database, not in the working directory.
    assert Path(tracker.uri[len("sqlite:///") :]).parent.joinpath("mlartifacts").is_dir()


def test_sanitize_key():
    assert experiment_log.sanitize_key("P@R0.8") == "P_R0.8"
    assert experiment_log.sanitize_key("/train//loss:cls/") == "train/loss_cls"
    assert experiment_log.sanitize_key("../x") == "x"
    assert len(experiment_log.sanitize_key("k" * 400)) == 250


def _wait_for_health(url: str, proc: subprocess.Popen, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} not healthy after {limit_s} s")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_real_server_parent_and_child(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_bin), "server", "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
           "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    log = (tmp_path / "server.log").open("w")
    # Own process group: the server forks workers, and SIGTERM must reach all of them.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        _wait_for_health(url, proc, limit_s=60)
        tracker = experiment_log.PipelineTracker(url, "server-test")
        with tracker.fold_run(model="ultradet", fold=1, stage="train", cfg=ExperimentConfig()) as run:
            hook = experiment_log.MLflowHook(run, flush_every=2)
            for it in range(1, 5):
                hook.after_step(it, {"loss_cls": 1.0 / it}, lr=1e-3)
            hook.after_train()
            run.log_eval_metrics({"AP50": 0.75})
            artifact = tmp_path / "note.txt"
            artifact.write_text("hi")
            run.log_artifacts([artifact])
        found = _post(f"{url}/api/2.0/mlflow/runs/search", {"experiment_ids": [tracker.experiment_id]})
        runs = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in found["runs"]}
        parent_id = tracker.parent_run_id("ultradet")
        assert set(runs) == {parent_id, run.run_id}
        assert runs[run.run_id]["mlflow.parentRunId"] == parent_id
        assert runs[parent_id]["ultradet.role"] == "parent"
        assert any((tmp_path / "artifacts").rglob("note.txt"))
        # What the MLflow UI shows, read through the same REST API: params, a metric curve, artifacts.
        child = _get(f"{url}/api/2.0/mlflow/runs/get?run_id={run.run_id}")["run"]
        params = {p["key"]: p["value"] for p in child["data"]["params"]}
        assert params["model.temporal.interval_pre_test"] == "15"
        history = _get(f"{url}/api/2.0/mlflow/metrics/get-history?run_id={run.run_id}&metric_key=train/loss_cls")
        assert [m["step"] for m in history["metrics"]] == [1, 2, 3, 4]
        assert history["metrics"][3]["value"] == pytest.approx(0.25)
        listed = _get(f"{url}/api/2.0/mlflow/artifacts/list?run_id={run.run_id}")
        assert [f["path"] for f in listed["files"]] == ["note.txt"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
