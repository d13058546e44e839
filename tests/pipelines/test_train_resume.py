"""The train stage resumes an interrupted run from its last checkpoint that loads: a truncated
newer one is skipped with a warning naming it; when none loads the stage stops with one line
naming them, before any MLflow run opens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from interruption import KillAfter

from ultradet.config import dump_config, load_experiment
from ultradet.data import load_videos, split_by_folds
from ultradet.engine import LossCSVWriter
from ultradet.engine.launch import build_trainer

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "experiments" / "profiles" / "smoke.yaml"
OVERRIDES = {"solver.max_iter": 4, "solver.checkpoint_period": 1}


@pytest.fixture
def interrupted(tmp_path, tiny_dataset):
    """``runs/fasterrcnn/fold0`` of a train stage killed after iteration 3 (checkpoints 1 and 2,
    losses.csv flushed at them), and the params.yaml of that run."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"out": str(tiny_dataset), "num_folds": 4},
        "train": {"profile": str(SMOKE), "overrides": OVERRIDES},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "t"},
    }))
    cfg = load_experiment("fasterrcnn", experiments_dir=ROOT / "experiments", profile=SMOKE, overrides=OVERRIDES)
    out = tmp_path / "runs" / "fasterrcnn" / "fold0"
    out.mkdir(parents=True)
    dump_config(cfg, out / "config.yaml")  # as the stage writes it: the run is resumable
    train, _ = split_by_folds(load_videos(tiny_dataset, "trainval", num_folds=4), [0])
    trainer = build_trainer(cfg, train, out, hooks=[LossCSVWriter(out / "losses.csv"), KillAfter(3)], progress=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert sorted(p.name for p in out.glob("model_*.pth")) == ["model_0000001.pth", "model_0000002.pth"]
    return params, out


def train_stage(params: Path, out: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ULTRADET_DEBUG", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, str(ROOT / "pipelines" / "train.py"), "--params", str(params), "--model", "fasterrcnn",
           "--fold", "0", "--out", str(out), "--experiments-dir", str(ROOT / "experiments")]
    return subprocess.run(cmd, cwd=params.parent, env=env, capture_output=True, text=True, timeout=600)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_truncated_newest_checkpoint_resumes_from_the_one_before(interrupted):
    params, out = interrupted
    truncate(out / "model_0000002.pth")
    proc = train_stage(params, out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"{out / 'model_0000002.pth'}: unreadable checkpoint" in proc.stderr
    assert "resuming from model_0000001.pth instead" in proc.stderr
    assert (out / "model_final.pth").is_file()
    # losses.csv kept the rows up to the checkpoint actually resumed from (1), then rows 2-4
    rows = (out / "losses.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4]


def test_no_readable_checkpoint_is_one_line_before_tracking(interrupted):
    params, out = interrupted
    for name in ("model_0000001.pth", "model_0000002.pth"):
        truncate(out / name)
    proc = train_stage(params, out)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"train: no checkpoint in {out} can be read, so the interrupted run cannot resume: ")
    assert "model_0000002.pth: unreadable" in line and "model_0000001.pth: unreadable" in line
    assert not (params.parent / "mlflow.db").exists()
