"""Helpers for tests that run the real pipeline entry points in a scratch copy of the project
(imported by name: pytest puts this folder on sys.path)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

TINY_DATA = {
    "root": None,
    "out": "data/cva_bus",
    "num_folds": 2,
    "synthetic": {"num_videos": 4, "test_videos": 1, "min_frames": 8, "max_frames": 10, "size": 64, "seed": 0},
}


def pipeline_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        RAY_USAGE_STATS_ENABLED="0",
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        MPLBACKEND="Agg",
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
    )
    return env


def run(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def make_project(tmp_path: Path, *, models=("fasterrcnn", "ultradet"), folds=(0, 1)) -> tuple[Path, dict]:
    """A scratch git + DVC repository holding the pipeline definition, stage scripts,
    experiments and package sources, with tiny params (``models`` x ``folds``)."""

    repo = tmp_path / "project"
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("pipelines", "experiments", "ultradet"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "tuned"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(data=TINY_DATA, models=list(models), folds=list(folds))
    params["train"] = {"profile": "experiments/profiles/smoke.yaml", "overrides": {"model.weights": "models/pretrain/model_final.pth"}}
    params["pretrain"].update(
        profile="experiments/profiles/smoke.yaml",
        overrides={"model.weights": None, "solver.max_iter": 2, "solver.checkpoint_period": 1},
        corpus={**TINY_DATA["synthetic"], "test_videos": 0, "seed": 1},
    )
    params["eval"] = {"warmup_frames": 1}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    env = pipeline_env(tmp_path)
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "scratch"], repo, env)
    return repo, env
