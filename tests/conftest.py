"""Shared fixtures for the whole test suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ultradet.data.synthetic import generate_dataset

# The tiny dataset's shape, for tests that assert on it.
TINY = dict(num_videos=8, test_videos=2, min_frames=12, max_frames=20, size=64, seed=0)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated CVA-BUS-style dataset (``rawframes/``, ``trainval.json``, ``test.json``):
    8 trainval videos (2 per patient fold of 4) + 2 test videos, 12-20 frames of 64 x 64, seed 0.

    Session-scoped and shared: tests must not modify it (copy it first, see ``tests/data``)."""
    return generate_dataset(tmp_path_factory.mktemp("tiny") / "cva_bus", progress=False, **TINY)


@pytest.fixture(scope="session")
def make_trained_run(tmp_path_factory: pytest.TempPathFactory):
    """``make(model="ultradet", overrides={}, thr90=0.45) -> run_dir``: a project folder holding
    ``runs/<model>/fold1/`` (``model_final.pth`` of a seeded, untrained detector of the smoke
    profile and its resolved ``config.yaml``) and ``results/<model>/fold1/metrics.json`` (only
    ``thr90``), as the train and evaluate stages leave them. Untrained weights detect nothing
    real, but deterministically: enough to compare two ways of running the same model."""
    import torch  # here, not at the top: most tests need neither torch nor a model

    from ultradet.config import dump_config, load_experiment
    from ultradet.engine.checkpoint import atomic_torch_save
    from ultradet.layout import fold_dir
    from ultradet.modeling import build_model

    root = Path(__file__).resolve().parents[1]

    def make(model: str = "ultradet", overrides: dict | None = None, thr90: float | None = 0.45) -> Path:
        project = tmp_path_factory.mktemp("project")
        cfg = load_experiment(model, experiments_dir=root / "experiments",
                              profile=root / "experiments/profiles/smoke.yaml", overrides=overrides or {})
        torch.manual_seed(0)
        run_dir = fold_dir(project / "runs", model, 1)
        run_dir.mkdir(parents=True)
        atomic_torch_save({"model": build_model(cfg).state_dict()}, run_dir / "model_final.pth")
        dump_config(cfg, run_dir / "config.yaml")
        results = fold_dir(project / "results", model, 1)
        results.mkdir(parents=True)
        (results / "metrics.json").write_text(json.dumps({"thr90": thr90}))
        return run_dir

    return make
