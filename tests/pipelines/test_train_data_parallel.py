"""`pipelines/train.py` with 2 data-parallel gloo workers on Ray Train: a run killed (SIGKILL)
after its first checkpoint and started again ends bit-identical to an uninterrupted run; and
`dvc repro` with `train.num_workers: 2` end to end.

Each run starts its own local Ray (``train.ray_address: null``), which dies with the run's
process (Ray's fate sharing), as the killed run's does here."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient
from pipeline_project import make_project, run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "pipelines" / "train.py"
MAX_ITER = 12


def env() -> dict:
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONUNBUFFERED": "1"}


def write_params(tmp_path: Path, data: Path) -> Path:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"out": str(data), "num_folds": 4},
        "train": {
            "profile": str(ROOT / "experiments/profiles/smoke.yaml"),
            "overrides": {
                "solver.max_iter": MAX_ITER, "solver.checkpoint_period": 2, "solver.clips_per_batch": 2,
                "model.backbone.norm": "bn", "model.backbone.freeze_at": 0,
            },
            "num_workers": 2,
        },
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "t"},
    }))
    return params


def command(params: Path, out: Path) -> list[str]:
    return [sys.executable, str(TRAIN), "--params", str(params), "--model", "fasterrcnn", "--fold", "0",
            "--out", str(out), "--experiments-dir", str(ROOT / "experiments")]


def train(params: Path, out: Path, cwd: Path) -> None:
    proc = subprocess.run(command(params, out), cwd=cwd, env=env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def test_two_worker_run_killed_and_resumed_equals_an_uninterrupted_one(tmp_path, tiny_dataset):
    params = write_params(tmp_path, tiny_dataset)
    straight = tmp_path / "straight"
    train(params, straight, tmp_path)

    resumed = tmp_path / "resumed"
    killed = subprocess.Popen(command(params, resumed), cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 400
    while time.time() < deadline and not (resumed / "model_0000002.pth").exists() and killed.poll() is None:
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    assert (resumed / "model_0000002.pth").exists() and not (resumed / "model_final.pth").exists()
    time.sleep(5)  # the killed run's Ray processes follow it

    train(params, resumed, tmp_path)
    want = torch.load(straight / "model_final.pth", weights_only=False)
    got = torch.load(resumed / "model_final.pth", weights_only=False)
    assert want["iteration"] == got["iteration"] == MAX_ITER
    assert want["model"].keys() == got["model"].keys()
    for name in want["model"]:
        assert torch.equal(want["model"][name], got["model"][name]), name
    # rank 0 logged one row per iteration, the resumed rows equal to the uninterrupted ones
    assert (resumed / "losses.csv").read_text() == (straight / "losses.csv").read_text()
    assert len((straight / "losses.csv").read_text().splitlines()) == 1 + MAX_ITER
    assert not list(resumed.glob("model_0*.pth"))  # intermediate checkpoints removed at the end


def test_dvc_repro_with_two_workers(tmp_path):
    repo, dvc_env = make_project(tmp_path, models=("ultradet",), folds=(0,))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["num_workers"] = 2
    params["train"]["overrides"]["solver.clips_per_batch"] = 2  # 2 workers x 1 clip
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], repo, dvc_env)

    assert (repo / "runs/ultradet/fold0/model_final.pth").is_file()
    assert (repo / "results/ultradet/fold0/metrics.json").is_file()
    assert (repo / "reports/paper_table.csv").is_file()
    client = MlflowClient(tracking_uri=dvc_env["MLFLOW_TRACKING_URI"])
    # the fold's run, which the train stage created (the evaluate stage logs into it afterwards)
    run_id = json.loads((repo / "runs/ultradet/fold0/mlflow_run.json").read_text())["run_id"]
    fold_run = client.get_run(run_id)
    assert fold_run.info.status == "FINISHED"
    assert fold_run.data.tags["ultradet.num_workers"] == "2"
    history = client.get_metric_history(run_id, "train/loss_total")
    assert [m.step for m in history] == [1, 2]  # rank 0 alone logged, once per iteration
