"""What the report reads: the models' identities and the per-fold files of the pipeline.

Only files are read (``results/<model>/fold<k>/metrics.json``, ``pr_curve.csv``,
``fp_curve.csv``, ``per_video.csv``, ``fp_causes.csv``, ``temporal_ablation.json`` and
``runs/<model>/fold<k>/{config.yaml,losses.csv}``), never
logs or MLflow, so the report is a pure function of DVC outputs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ultradet.config import load_config
from ultradet.errors import UserError
from ultradet.evaluation.names import TABLE_METRICS
from ultradet.evaluation.per_video import PER_VIDEO_FILE, VIDEO_COLUMNS
from ultradet.layout import fold_dir

# The keys every metrics.json must hold (fractions for AP/Pr/R, FP per minute, frames per second).
METRIC_KEYS = TABLE_METRICS


class ReportInputError(UserError, FileNotFoundError):
    """Input files of the report are missing or malformed; the message lists every such file."""


@dataclass(frozen=True)
class ModelSpec:
    """One row of the report: ``name`` (results folder, MLflow tag), the paper's ``display_name``,
    ``group`` (e.g. ``"One-stage"``) and ``type`` (``"Image"`` or ``"Video"``)."""

    name: str
    display_name: str
    group: str
    type: str


def model_specs(names: Sequence[str], experiments_dir: str | Path = "experiments") -> list[ModelSpec]:
    """Read display name, group and type of each model from ``<experiments_dir>/<name>.yaml``.

    Raises:
        ultradet.config.ConfigError: an experiment file is missing or invalid.
    """
    return [_spec(name, Path(experiments_dir) / f"{name}.yaml") for name in names]


def trained_model_specs(names: Sequence[str], runs_dir: str | Path, fold: int) -> list[ModelSpec]:
    """Display name, group and type of each model from the config it was trained with
    (``<runs_dir>/<name>/fold<fold>/config.yaml``, written by the train stage), so that the
    report reads only pipeline outputs: an experiment file that is no row (a search's best
    config, a model not in ``models``) cannot make it stale.

    Raises:
        ReportInputError: config files are missing (all listed).
        ultradet.config.ConfigError: one is invalid.
    """
    files = fold_files(runs_dir, names, [fold], "config.yaml")
    require(list(files.values()))
    return [_spec(name, path) for (name, _), path in files.items()]


def _spec(name: str, config_file: Path) -> ModelSpec:
    cfg = load_config(config_file)
    return ModelSpec(name, cfg.display_name, cfg.group, cfg.type)


def fold_files(root: str | Path, models: Sequence[str], folds: Sequence[int], filename: str) -> dict[tuple[str, int], Path]:
    """``{(model, fold): <root>/<model>/fold<fold>/<filename>}`` in model-then-fold order."""
    return {(m, k): fold_dir(root, m, k) / filename for m in models for k in folds}


def require(paths: Sequence[Path]) -> None:
    """Raise :class:`ReportInputError` listing every path of ``paths`` that is not a file."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ReportInputError(
            f"{len(missing)} report input file(s) missing (run the train/evaluate stages first, "
            f"or restrict `models`/`folds` in params.yaml):\n  " + "\n  ".join(missing)
        )


def load_fold_metrics(results_dir: str | Path, models: Sequence[str], folds: Sequence[int]) -> pd.DataFrame:
    """All folds' ``metrics.json`` as a long frame with columns ``model, fold, metric, value``
    (units as in the files; JSON ``null`` becomes NaN), for the keys in :data:`METRIC_KEYS`.

    Raises:
        ReportInputError: files are missing (all listed), not JSON, or lack a key (file and keys named).
    """
    files = fold_files(results_dir, models, folds, "metrics.json")
    require(list(files.values()))
    rows = []
    for (model, fold), path in files.items():
        metrics = _read_metrics(path)
        rows += [(model, fold, key, number(metrics[key])) for key in METRIC_KEYS]
    return pd.DataFrame(rows, columns=["model", "fold", "metric", "value"])


def load_largest(
    results_dir: str | Path, models: Sequence[str], folds: Sequence[int], key: str, *, above: int = 0
) -> dict[str, int]:
    """``{model: n}``, ``n`` the largest integer ``key`` of the model's ``metrics.json`` files
    over ``folds``, for the models where it exceeds ``above`` (absent = 0). E.g.
    ``delay_frames`` (a bounded lookahead: outputs emitted ``k`` frames late) or
    ``max_detections_per_frame``."""
    largest: dict[str, int] = {}
    for (model, _), path in fold_files(results_dir, models, folds, "metrics.json").items():
        n = int(_read_metrics(path).get(key) or 0)
        if n > max(above, largest.get(model, 0)):
            largest[model] = n
    return largest


def read_json(path: Path) -> dict:
    """The JSON object in ``path``; ReportInputError naming the file if it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path}: not valid JSON ({exc})") from None


def _read_metrics(path: Path) -> dict:
    metrics = read_json(path)
    absent = [k for k in METRIC_KEYS if k not in metrics]
    if absent:
        raise ReportInputError(f"{path}: missing metric(s) {', '.join(absent)}")
    return metrics


def number(value) -> float:
    """A JSON number as float, ``null`` (a metric at no defined value) as NaN."""
    return math.nan if value is None else float(value)


def load_curves(
    results_dir: str | Path, models: Sequence[str], folds: Sequence[int], filename: str, columns: Sequence[str]
) -> dict[str, list[pd.DataFrame]]:
    """Per model, the folds' curve CSVs (e.g. ``pr_curve.csv`` with ``recall, precision``),
    each reduced to ``columns``.

    Raises:
        ReportInputError: files are missing (all listed) or lack a column.
    """
    files = fold_files(results_dir, models, folds, filename)
    require(list(files.values()))
    curves: dict[str, list[pd.DataFrame]] = {m: [] for m in models}
    for (model, _), path in files.items():
        curves[model].append(_read_columns(path, columns))
    return curves


def load_losses(runs_dir: str | Path, models: Sequence[str], folds: Sequence[int]) -> tuple[dict[str, list[pd.DataFrame]], list[Path]]:
    """Per model, the folds' ``losses.csv`` (``iteration, loss_total, <named losses>``; an ``lr``
    column is dropped). Training logs are optional for the report (results can be reported
    without their run folders), so missing files are returned, not raised.

    Returns:
        ``(losses, missing)``: models with every fold's file present, and the missing paths.

    Raises:
        ReportInputError: a file lacks ``iteration`` or ``loss_total``.
    """
    files = fold_files(runs_dir, models, folds, "losses.csv")
    missing = [p for p in files.values() if not p.is_file()]
    losses: dict[str, list[pd.DataFrame]] = {}
    for (model, _), path in files.items():
        if any(files[(model, k)] in missing for k in folds):
            continue
        frame = _read_columns(path, ["iteration", "loss_total"], keep_others=True)
        losses.setdefault(model, []).append(frame.drop(columns=["lr"], errors="ignore"))
    return losses, missing


def load_per_video(results_dir: str | Path, models: Sequence[str], folds: Sequence[int]) -> tuple[pd.DataFrame, list[Path]]:
    """Every (model, fold)'s ``per_video.csv`` (:mod:`ultradet.evaluation.per_video`) as one
    long frame with ``model`` and ``fold`` columns first (``patient_id`` read as text). The
    patient-level comparison is optional for the report (results written before the file
    existed still make a table), so missing files are returned, not raised.

    Returns:
        ``(rows, missing)``: the rows of the files present (no rows when any is missing, so that
        no comparison silently pairs a subset of folds), and the missing paths.

    Raises:
        ReportInputError: a file lacks one of ``video_id, patient_id, num_frames, minutes,
            num_gt_boxes``.
    """
    files = fold_files(results_dir, models, folds, PER_VIDEO_FILE)
    missing = [p for p in files.values() if not p.is_file()]
    if missing:
        return pd.DataFrame(columns=["model", "fold", *VIDEO_COLUMNS]), missing
    frames = [
        _read_columns(path, VIDEO_COLUMNS, keep_others=True, dtype={"patient_id": str}).assign(model=model, fold=fold)
        for (model, fold), path in files.items()
    ]
    rows = pd.concat(frames, ignore_index=True)
    return rows[["model", "fold", *[c for c in rows.columns if c not in ("model", "fold")]]], []


def load_flow_estimators(runs_dir: str | Path, models: Sequence[str], folds: Sequence[int]) -> dict[str, str]:
    """Per model with an NTCA head, the optical flow estimator its runs used, read from the
    resolved ``runs/<model>/fold<k>/config.yaml`` (``flownets`` with its weights file, or a
    classical estimator). Folds without the file are skipped; folds that differ are all named.

    Raises:
        ultradet.config.ConfigError: a ``config.yaml`` is not a valid configuration.
    """
    estimators: dict[str, list[str]] = {}
    for (model, _), path in fold_files(runs_dir, models, folds, "config.yaml").items():
        if not path.is_file():
            continue
        cfg = load_config(path)
        if cfg.flow_estimator is None:
            continue
        weights = cfg.model.flow.weights
        name = f"{cfg.flow_estimator} ({Path(weights).name})" if cfg.flow_estimator == "flownets" and weights else cfg.flow_estimator
        if name not in estimators.setdefault(model, []):
            estimators[model].append(name)
    return {model: " / ".join(names) for model, names in estimators.items()}


def _read_columns(path: Path, columns: Sequence[str], keep_others: bool = False, dtype: dict | None = None) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=dtype)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ReportInputError(f"{path}: missing column(s) {', '.join(absent)} (has {', '.join(frame.columns)})")
    return frame if keep_others else frame[list(columns)]
