"""`pipelines/tune.py` refuses inputs that cannot make a search with one line on stderr, before
MLflow or Ray is touched (``ULTRADET_DEBUG=1`` shows the traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def tune(tmp_path: Path, space: dict, *extra: str, debug: bool = False) -> subprocess.CompletedProcess:
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"out": str(tmp_path / "data"), "num_folds": 4},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "t"},
    }))
    env = {k: v for k, v in os.environ.items() if k not in ("ULTRADET_DEBUG", "MLFLOW_TRACKING_URI")}
    env.update(PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", **({"ULTRADET_DEBUG": "1"} if debug else {}))
    args = ["--search-space", str(tmp_path / "space.yaml"), "--params", str(params),
            "--experiments-dir", str(ROOT / "experiments"), "--storage-path", str(tmp_path / "tune_results"), *extra]
    return subprocess.run([sys.executable, str(ROOT / "pipelines" / "tune.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_refused_up_front(proc: subprocess.CompletedProcess, tmp_path: Path) -> str:
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    # Nothing was started: no MLflow store, no Tune experiment folder.
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "tune_results").exists()
    return line


def test_search_space_with_low_above_high(tmp_path):
    space = {"experiment": "ultradet_poto", "params": {"model.poto.poto_alpha": {"uniform": [1.0, 0.0]}}}
    line = assert_refused_up_front(tune(tmp_path, space), tmp_path)
    assert line == f"tune: {tmp_path / 'space.yaml'}: params.model.poto.poto_alpha.uniform: low 1.0 is above high 0.0; write [low, high]"


@pytest.mark.parametrize("count", ["0", "-3"])
def test_no_trials_asked_for(tmp_path, count):
    space = {"experiment": "ultradet_poto", "params": {"model.poto.poto_alpha": {"uniform": [0.0, 1.0]}}}
    line = assert_refused_up_front(tune(tmp_path, space, "--num-samples", count), tmp_path)
    assert line == f"tune: num_samples (--num-samples) must be >= 1, got {count}"


def test_debug_shows_the_traceback(tmp_path):
    space = {"experiment": "ultradet_poto", "params": {"model.poto.poto_alpha": {"uniform": [0.0, 1.0]}}}
    proc = tune(tmp_path, space, "--num-samples", "0", debug=True)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError: num_samples" in proc.stderr
