"""User errors exit with one line and no traceback from every entry point; bugs keep theirs;
ULTRADET_DEBUG=1 shows every traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ultradet.config import ConfigError
from ultradet.errors import run_cli

REPO = Path(__file__).resolve().parents[1]


def _raise(exc: BaseException):
    def main():
        raise exc

    return main


def test_user_error_is_one_line_on_stderr(capsys, monkeypatch):
    monkeypatch.delenv("ULTRADET_DEBUG", raising=False)
    assert run_cli(_raise(ConfigError("x.yaml: bad key")), "train") == 1
    assert capsys.readouterr().err == "train: x.yaml: bad key\n"


def test_unexpected_error_keeps_its_traceback(monkeypatch):
    monkeypatch.delenv("ULTRADET_DEBUG", raising=False)
    with pytest.raises(KeyError, match="bug"):
        run_cli(_raise(KeyError("bug")), "train")


def test_debug_env_shows_user_error_tracebacks(monkeypatch):
    monkeypatch.setenv("ULTRADET_DEBUG", "1")
    with pytest.raises(ConfigError):
        run_cli(_raise(ConfigError("x")), "train")
    monkeypatch.setenv("ULTRADET_DEBUG", "0")
    assert run_cli(_raise(ConfigError("x")), "train") == 1


def _script(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ULTRADET_DEBUG", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, str(REPO / "pipelines" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_train_on_a_fold_that_does_not_exist_fails_before_tracking(tiny_dataset, tmp_path):
    # `--fold 7` of 4 folds used to train on every video and log an MLflow run.
    db = tmp_path / "mlflow.db"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"out": str(tiny_dataset), "num_folds": 4},
        "train": {"profile": "experiments/profiles/smoke.yaml", "overrides": {}},
        "tracking": {"uri": f"sqlite:///{db}", "experiment": "e"},
    }))
    proc = _script(tmp_path, "train.py", "--params", str(params), "--model", "fasterrcnn", "--fold", "7",
                   "--out", str(tmp_path / "run"))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        "train: fold(s) 7 hold no video; the 8 videos are in fold(s) 0, 1, 2, 3 (folds run 0..num_folds-1)"
    ]
    assert not db.exists() and not (tmp_path / "run").exists()


def test_unreachable_tracking_server_is_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("models: [fasterrcnn]\nfolds: [0]\ntracking: {uri: 'http://127.0.0.1:9', experiment: e}\n")
    proc = _script(tmp_path, "report.py", "--params", str(params), "--mlflow")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("report: MLflow tracking server http://127.0.0.1:9 is not reachable")


def test_bad_override_is_one_line_naming_the_overrides(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"out": str(tmp_path / "none"), "num_folds": 4},
        "train": {"profile": "experiments/profiles/smoke.yaml", "overrides": {"solver.max_iter": "ten"}},
    }))
    proc = _script(tmp_path, "train.py", "--params", str(params), "--model", "fasterrcnn", "--fold", "0")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == "train: invalid configuration (overrides solver.max_iter):"
    assert proc.stderr.splitlines()[1].startswith("  solver.max_iter: Input should be a valid integer")


def test_prepare_params_without_data_section(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train: {}\n")
    proc = _script(tmp_path, "prepare.py", "--params", str(params))
    assert proc.returncode == 2 and proc.stderr.splitlines() == [f"prepare: {params} has no 'data:' section"]
