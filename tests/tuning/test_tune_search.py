"""Real Ray Tune searches on the tiny dataset: concurrency, MLflow nesting, retries, resume and
an existing cluster (``--address``)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from ultradet.config import load_experiment

pytestmark = pytest.mark.slow

# Keep every Ray process (head, workers, driver) on the loopback interface: Ray otherwise
# rewrites 127.0.0.1 to the machine's network address. Set before ray is first imported.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

ROOT = Path(__file__).resolve().parents[2]
TUNE = ROOT / "pipelines" / "tune.py"
SPACE = {
    "experiment": "ultradet_poto",
    "metric": "FP90",
    "mode": "min",
    "params": {
        "model.poto.poto_alpha": {"uniform": [0.2, 1.0]},
        "model.temporal.interval_pre_test": {"randint": [1, 3]},
    },
}


@pytest.fixture
def search(tmp_path, tiny_dataset):
    """Paths and CLI args for a tiny search; ``args(...)`` adds options."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"out": str(tiny_dataset), "num_folds": 4},
        "train": {"profile": str(ROOT / "experiments/profiles/smoke.yaml"), "overrides": {}},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "t"},
    }))
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    for f in (ROOT / "experiments").glob("*.yaml"):
        (experiments / f.name).write_text(f.read_text())

    def args(*extra: str) -> list[str]:
        return [
            "--search-space", str(space), "--params", str(params), "--experiments-dir", str(experiments),
            "--storage-path", str(tmp_path / "tune_results"), "--name", "s", "--num-samples", "4",
            "--max-concurrent", "2", "--cpus-per-trial", "1", "--max-iter", "4", "--eval-period", "2",
            "--seed", "0", *extra,
        ]

    return tmp_path, experiments, args


def env(**extra: str) -> dict:
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", **extra}


def run_cli(cli_args: list[str], cwd: Path, extra_env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(TUNE), *cli_args], cwd=cwd, env=env(**(extra_env or {})),
                          capture_output=True, text=True, **kw)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def trial_runs(tmp_path: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t-tune")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ultradet.role") == "search"]
    children = [r for r in runs if r.data.tags.get("ultradet.role") == "trial"]
    return parents, children


def test_search_runs_trials_tracks_them_and_writes_a_loadable_best_config(search):
    tmp_path, experiments, args = search
    proc = run_cli(args(), cwd=tmp_path)
    assert "top" in proc.stdout and "best config" in proc.stdout

    parents, children = trial_runs(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert "model.poto.poto_alpha" in child.data.params
        assert child.info.status in ("FINISHED", "KILLED")  # KILLED = stopped early by ASHA

    best = load_experiment("tuned/s", experiments_dir=experiments)  # experiments/tuned/s.yaml
    table = (tmp_path / "tune_results" / "s" / "top_k.csv").read_text().splitlines()
    assert len(table) == 1 + 4
    alpha = float(table[1].split(",")[1])
    assert best.model.poto.poto_alpha == pytest.approx(alpha)
    assert best.model.proposal_generator.name == "poto"


def test_crashed_trial_is_retried(search, monkeypatch):
    tmp_path, _, args = search
    sys.path.insert(0, str(TUNE.parent))
    from ray import cloudpickle  # Ray pickles with its own vendored copy
    import failing_trial
    import tune as tune_cli

    from ultradet.tuning import search as search_module
    from ultradet.tuning.driver import SearchRequest, run_search

    monkeypatch.chdir(tmp_path)
    cloudpickle.register_pickle_by_value(failing_trial)  # Ray workers cannot import tests/
    monkeypatch.setattr(search_module, "run_trial", failing_trial.FailOnce(tmp_path / "failed_once"))
    request = SearchRequest(**vars(tune_cli.parse_args(args("--num-samples", "1", "--max-concurrent", "1", "--max-failures", "1"))))
    run_search(request, yaml.safe_load(Path(request.params).read_text()))
    markers = list((tmp_path / "failed_once").iterdir())
    assert len(markers) == 1  # the first attempt crashed...
    parents, children = trial_runs(tmp_path)
    statuses = sorted(c.info.status for c in children)
    assert statuses == ["FAILED", "FINISHED"]  # ...and the retry finished


def test_trials_train_on_two_data_parallel_workers(search):
    # The cheapest model (one-stage DeFCN at the smoke scale), one trial, 2 iterations, one
    # validation: what is tested is the trial's process group, not the search.
    tmp_path, _, args = search
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({**SPACE, "experiment": "defcn", "params": {
        "model.poto.poto_alpha": {"uniform": [0.2, 1.0]}}}))
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train"]["overrides"] = {"solver.clips_per_batch": 2}  # 2 workers x 1 clip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = run_cli(args("--num-samples", "1", "--max-concurrent", "1", "--cpus-per-trial", "2", "--workers-per-trial", "2",
                        "--max-iter", "2", "--eval-period", "2"), cwd=tmp_path, timeout=900)
    assert "best config" in proc.stdout
    _, children = trial_runs(tmp_path)
    assert len(children) == 1 and children[0].info.status == "FINISHED", proc.stdout[-3000:] + proc.stderr[-6000:]
    assert children[0].data.tags["ultradet.num_workers"] == "2"  # the world size rank 0 saw
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    # rank 0 alone logged the losses (one value per iteration) and the validation
    assert [m.step for m in client.get_metric_history(children[0].info.run_id, "train/loss_total")] == [1, 2]
    assert [m.step for m in client.get_metric_history(children[0].info.run_id, "val/FP90")] == [2]


def test_interrupted_search_resumes(search):
    tmp_path, _, args = search
    storage = tmp_path / "tune_results" / "s"
    proc = subprocess.Popen([sys.executable, str(TUNE), *args("--max-concurrent", "1")], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(storage.glob("*/result.json")):
        time.sleep(1)
    while time.time() < deadline and not any(p.stat().st_size for p in storage.glob("*/result.json")):
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    output = proc.stdout.read()
    assert proc.returncode == 130, output[-3000:]
    assert "Resume with" in output
    assert not (storage / "top_k.csv").exists()

    resumed = run_cli(args("--resume", str(storage)), cwd=tmp_path)
    assert "best config" in resumed.stdout
    parents, children = trial_runs(tmp_path)
    assert len(parents) == 1  # the resumed search continues the same parent run
    assert len({c.data.tags["ultradet.trial_id"] for c in children}) == 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_search_on_an_existing_head_node(search):
    tmp_path, _, args = search
    port = free_port()
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay < 108 bytes
    ray_bin = Path(sys.executable).parent / "ray"
    # The cluster's token authentication, as a user connecting to a real cluster would set it up.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={ray_tmp}"],
        env=env(**auth), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        time.sleep(8)
        assert head.poll() is None, head.stdout.read()
        proc = run_cli(args("--num-samples", "2", "--address", f"127.0.0.1:{port}"), cwd=tmp_path, extra_env=auth, timeout=400)
        assert "best config" in proc.stdout
        _, children = trial_runs(tmp_path)
        assert len(children) == 2
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(ray_tmp, ignore_errors=True)
