"""Where the pipeline keeps each (model, fold), written once.

``<root>/<model>/fold<k>``: under ``runs/`` the training outputs (checkpoint, resolved
``config.yaml``, ``losses.csv``, ``mlflow_run.json``), under ``results/`` the evaluation outputs
(``metrics.json``, curves, predictions); ``<model>-fold<k>`` names the fold's MLflow child run.
``dvc.yaml`` spells the same paths in its own templating (``runs/${item.model}/fold${item.fold}``);
``tests/test_layout.py`` keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path


def fold_dir(root: str | Path, model: str, fold: int) -> Path:
    """``<root>/<model>/fold<fold>``, e.g. ``fold_dir("runs", "ultradet", 2)`` -> ``runs/ultradet/fold2``."""
    return Path(root) / model / f"fold{int(fold)}"


def fold_run_name(model: str, fold: int) -> str:
    """The MLflow run name of a fold: ``ultradet-fold2``."""
    return f"{model}-fold{int(fold)}"


def sibling_fold_dir(run_dir: str | Path, root_name: str) -> Path:
    """The same (model, fold) under another root of the same project: ``sibling_fold_dir(
    "runs/ultradet/fold2", "results")`` -> ``results/ultradet/fold2`` (the path made absolute first)."""
    run_dir = Path(run_dir).resolve()
    return run_dir.parents[2] / root_name / run_dir.parent.name / run_dir.name
