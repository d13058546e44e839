"""The report's "Temporal ablation" section: for each model with temporal aggregation, AP50, Pr80,
FP80 and R@16 with it (the fold's ``metrics.json``) and without it (the same weights run again
with ``model.temporal.aggregate_test: false``, the fold's ``temporal_ablation.json``,
:mod:`ultradet.evaluation.ablation`), their difference, and how many frames' top detection it
changes; fold means. Single-frame models have no row.

A fold whose PR curve (either run's) does not reach 0.8 recall holds no Pr80 / FP80 measurement
(:func:`ultradet.report.claim.measured_only`): that metric's pair leaves the fold out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ultradet.evaluation.ablation import ABLATION_FILE
from ultradet.evaluation.names import MAX_DETS_RECALL, fp_name, precision_name, recall_name
from ultradet.report.claim import measured_only
from ultradet.report.inputs import ModelSpec, ReportInputError, fold_files, number, read_json
from ultradet.report.table import UNITS

HEADING = "Temporal ablation"
SWITCH = "model.temporal.aggregate_test: false"
# (metric key, label)
ABLATION_METRICS = (
    ("AP50", "AP50"),
    (precision_name(0.8), precision_name(0.8)),
    (fp_name(0.8), fp_name(0.8)),
    (recall_name(MAX_DETS_RECALL), f"R@{MAX_DETS_RECALL}"),
)
CHANGE_KEYS = ("frames", "top_changed", "top_score_change")


def load_ablation(
    results_dir: str | Path, models: Sequence[str], folds: Sequence[int]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[str, int], float], list[Path]]:
    """The folds' ``temporal_ablation.json`` of the models with temporal aggregation whose every
    fold has the file (results evaluated before it existed have none and are left out).

    Returns:
        ``(metrics, change, max_recall, missing)``: long frame ``model, fold, metric, value`` of
        the ablated runs (:data:`ABLATION_METRICS`, ``metrics.json`` units, NaN for ``null``);
        frame ``model, fold, frames, top_changed, top_score_change``; ``{(model, fold): the end
        of the ablated run's PR curve}``; the missing files.

    Raises:
        ReportInputError: a file is not JSON or lacks a key.
    """
    files = fold_files(results_dir, models, folds, ABLATION_FILE)
    missing = [p for p in files.values() if not p.is_file()]
    metrics, change, max_recall = [], [], {}
    for (model, fold), path in files.items():
        if any(files[(model, k)] in missing for k in folds):
            continue
        content = _read(path)
        if not content["temporal_aggregation"]:
            continue
        metrics += [(model, fold, key, number(content["metrics"][key])) for key, _ in ABLATION_METRICS]
        change.append((model, fold, *(number(content["change"][key]) for key in CHANGE_KEYS)))
        max_recall[(model, fold)] = number(content["max_recall"])
    return (
        pd.DataFrame(metrics, columns=["model", "fold", "metric", "value"]),
        pd.DataFrame(change, columns=["model", "fold", *CHANGE_KEYS]),
        max_recall,
        missing,
    )


def _read(path: Path) -> dict:
    content = read_json(path)
    needed = ["temporal_aggregation"]
    if content.get("temporal_aggregation"):
        needed += ["metrics", "change", "max_recall"]
    absent = [k for k in needed if k not in content]
    absent += [f"metrics.{k}" for k, _ in ABLATION_METRICS if "metrics" in content and k not in content["metrics"]]
    absent += [f"change.{k}" for k in CHANGE_KEYS if "change" in content and k not in content["change"]]
    if absent:
        raise ReportInputError(f"{path}: missing key(s) {', '.join(absent)}")
    return content


def summarize_ablation(
    with_metrics: pd.DataFrame,
    without_metrics: pd.DataFrame,
    change: pd.DataFrame,
    specs: Sequence[ModelSpec],
    max_recall: Mapping[tuple[str, int], float],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fold means of the ablation, in ``specs`` order, table units (percent for AP50, Pr80, R@16).

    Args:
        with_metrics: long frame ``model, fold, metric, value`` of the default runs, already
            restricted to measurements (:func:`measured_only` with their PR curves' ends).
        without_metrics, change, max_recall: :func:`load_ablation`'s first three results.
        specs: the report's models; those without ablation rows are skipped.

    Returns:
        ``(metrics, change)``: ``model, display_name, metric, with_aggregation,
        without_aggregation, difference, difference_sd, n``, means over the ``n`` folds where both runs measure the metric
        (``difference = with_aggregation - without_aggregation``, its sample sd over those folds); and ``model,
        display_name, frames, top_changed, top_score_change, n``, means over folds (``frames``
        per fold, ``top_changed`` in percent of frames).
    """
    without = measured_only(without_metrics, max_recall)
    metric_rows, change_rows = [], []
    for spec in specs:
        if spec.name not in set(without["model"]):
            continue
        for key, _ in ABLATION_METRICS:
            pair = pd.concat([_by_fold(with_metrics, spec.name, key), _by_fold(without, spec.name, key)], axis=1, join="inner").dropna()
            scale = 100.0 if UNITS[key] == "%" else 1.0
            a, b = pair.iloc[:, 0].to_numpy() * scale, pair.iloc[:, 1].to_numpy() * scale
            n = len(pair)
            diff = a - b
            metric_rows.append((spec.name, spec.display_name, key, _mean(a), _mean(b), _mean(diff),
                                float(np.std(diff, ddof=1)) if n > 1 else math.nan, n))
        folds = change[change["model"] == spec.name]
        change_rows.append((spec.name, spec.display_name, _mean(folds["frames"]), 100 * _mean(folds["top_changed"]),
                            _mean(folds["top_score_change"]), len(folds)))
    return (
        pd.DataFrame(metric_rows, columns=["model", "display_name", "metric", "with_aggregation", "without_aggregation", "difference", "difference_sd", "n"]),
        pd.DataFrame(change_rows, columns=["model", "display_name", *CHANGE_KEYS, "n"]),
    )


def _by_fold(frame: pd.DataFrame, model: str, metric: str) -> pd.Series:
    rows = frame[(frame["model"] == model) & (frame["metric"] == metric)]
    return rows.set_index("fold")["value"]


def _mean(values) -> float:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


def _cell(value: float, decimals: int = 1, sign: bool = False) -> str:
    if math.isnan(value):
        return "–"
    value = round(value, decimals) + 0.0  # no "-0.0" for a difference that rounds to zero
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def section(metrics: pd.DataFrame, change: pd.DataFrame, folds: Sequence[int]) -> str:
    """The Markdown section: what was switched off, the metrics with and without, the change of
    the top detections."""
    labels = dict(ABLATION_METRICS)
    intro = (
        f"Each model with temporal aggregation evaluated a second time on every test fold with the same "
        f"weights and its temporal aggregation switched off at test time (`{SWITCH}`): every frame is "
        f"answered from itself alone, as the first frame of a video is. The relation layers (BasicDet, "
        f"UltraDet) relate only the frame's own RoIs; UltraDet's NTCA takes each RoI's own vector as its "
        f"only context (no optical flow); MEGA has no memory, FGFA aggregates no other frame's map. "
        f"With − without is what the aggregation changes (mean ± sd of the paired differences over the n "
        f"of {len(folds)} folds where both runs reach the metric's recall level). AP50, Pr80 and R@16 in %, "
        f"FP80 in FP sequences per minute. Single-frame models have no row."
    )
    lines = ["| Model | Metric | With | Without | With − without | n |", "|:---|:---|---:|---:|---:|---:|"]
    for row in metrics.itertuples(index=False):
        diff = _cell(row.difference, sign=True) + ("" if math.isnan(row.difference_sd) else f" ± {row.difference_sd:.1f}")
        lines.append(f"| {row.display_name} | {labels[row.metric]} | {_cell(row.with_aggregation)} | {_cell(row.without_aggregation)} | {diff} | {row.n} |")
    changes = [
        "| Model | Frames per fold | Top detection changed (% of frames) | Mean abs. change of the top score | n |",
        "|:---|---:|---:|---:|---:|",
    ]
    for row in change.itertuples(index=False):
        changes.append(
            f"| {row.display_name} | {_cell(row.frames, 0)} | {_cell(row.top_changed)} | {_cell(row.top_score_change, 3)} | {row.n} |"
        )
    explain = (
        "A frame's top detection (its highest-scoring box) changed when, without the aggregation, the top "
        "box is another one (IoU < 0.5 with the default run's) or exists in one run only; the score change "
        "is averaged over the frames where it is the same box (ultradet.evaluation.ablation)."
    )
    return f"## {HEADING}\n\n{intro}\n\n" + "\n".join(lines) + "\n\n" + "\n".join(changes) + f"\n\n{explain}\n\n"


def summary_entry(metrics: pd.DataFrame, change: pd.DataFrame) -> dict:
    """The ``temporal_ablation`` entry of summary.json: ``{"switch", "units", "models": {model:
    {<metric>: {"with", "without", "difference", "difference_sd", "n"}, "change": {"frames",
    "top_changed", "top_score_change", "n"}}}}`` (NaN as None)."""
    models: dict = {}
    for row in metrics.itertuples(index=False):
        models.setdefault(row.model, {})[row.metric] = {
            "with": _json(row.with_aggregation), "without": _json(row.without_aggregation), "difference": _json(row.difference),
            "difference_sd": _json(row.difference_sd), "n": int(row.n),
        }
    for row in change.itertuples(index=False):
        models.setdefault(row.model, {})["change"] = {
            "frames": _json(row.frames), "top_changed": _json(row.top_changed),
            "top_score_change": _json(row.top_score_change), "n": int(row.n),
        }
    units = {key: UNITS[key] for key, _ in ABLATION_METRICS}
    units.update({"top_changed": "% of frames", "top_score_change": "mean |score difference|", "frames": "frames per fold"})
    return {"switch": SWITCH, "units": units, "models": models}


def _json(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
