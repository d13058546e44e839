"""The paper's metric suite on explicit inputs (spec section 4), and writing it for DVC.

``evaluate`` is the engine -> evaluation contract of docs/architecture.md: a COCO-VID ground
truth dict and a COCO results list in, an :class:`EvaluationResult` out. numpy only.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ultradet.evaluation.average_precision import COCO_IOU_THRESHOLDS, average_precision, pr_curve
from ultradet.evaluation.fp_sequences import fp_per_minute
from ultradet.evaluation.inputs import EvalInputs, build_inputs
from ultradet.evaluation.matching import best_gt_per_detection, greedy_match, per_frame_rank
from ultradet.evaluation.names import (
    AP_METRICS,
    MAX_DETS_RECALL,
    OPERATING_POINTS,
    RECALL_LEVELS,
    fp_name,
    precision_name,
    recall_name,
    threshold_name,
)
from ultradet.evaluation.per_video import PER_VIDEO_FILE, per_video_metrics
from ultradet.evaluation.precision_at_recall import precision_at_recall, threshold_at_recall
from ultradet.evaluation.recall import recall_at_k

# Recall levels of the FP-vs-recall plot, k / 20 so 0.7, 0.8, 0.9 are hit exactly.
FP_CURVE_RECALLS = np.arange(1, 20) / 20.0


@dataclass
class EvaluationResult:
    """Metrics and curves of one evaluation.

    Attributes:
        metrics: flat dict for ``metrics.json``: ``AP50 AP75 mAP`` (VOC all-point AP at IoU 0.5,
            0.75 and mean over 0.50:0.05:0.95), ``Pr70 Pr80 Pr90`` (precision at recall),
            ``thr70 thr80 thr90`` (score thresholds at those recalls), ``FP70 FP80 FP90`` (FP
            sequences per minute at 30 fps at those thresholds), ``R16`` (recall with <= 16
            outputs per frame), ``num_videos num_frames num_gt_boxes num_detections
            max_detections_per_frame``. AP, Pr and
            R are fractions in [0, 1]; undefined values are NaN (see :func:`evaluate`).
        curves: ``pr``: ``{"recall", "precision", "score"}`` float64 (N,) arrays, the raw
            IoU-0.5 curve, one point per detection in canonical order; ``fp``: ``{"recall",
            "fp_per_minute", "threshold"}`` float64 (19,) arrays at recall 0.05, 0.10, ..., 0.95.
        per_video: one row per video at the fold's Pr80/Pr90 operating points,
            ``{column: (V,) array}`` (:func:`ultradet.evaluation.per_video.per_video_metrics`);
            empty when not computed.
    """

    metrics: dict[str, float | int]
    curves: dict[str, dict[str, np.ndarray]] = field(repr=False)
    per_video: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def _ap_metrics(inputs: EvalInputs, max_iou: np.ndarray, argmax: np.ndarray) -> dict[str, float]:
    num_gt = len(inputs.gt_boxes)
    aps = np.array([average_precision(greedy_match(max_iou, argmax, t), num_gt) for t in COCO_IOU_THRESHOLDS])
    # aps[0] is IoU 0.50 and aps[5] IoU 0.75 (COCO_IOU_THRESHOLDS = 0.50, 0.55, ..., 0.95).
    return dict(zip(AP_METRICS, (float(aps[0]), float(aps[5]), float(aps.mean()))))


def evaluate(
    gt: dict,
    results: list[dict],
    *,
    video_ids: Iterable[int] | None = None,
    recalls: Iterable[float] = RECALL_LEVELS,
    max_dets_recall: int = MAX_DETS_RECALL,
) -> EvaluationResult:
    """AP50/AP75/mAP, Pr@R, thr@R, FP@R and R@16 of ``results`` against ``gt`` (spec section 4,
    with its defects fixed; each module's docstring states its definition).

    Args:
        gt: COCO-VID dict (spec section 1): ``videos``, ``images`` (``id``, ``video_id``,
            ``frame_id``), ``annotations`` (``image_id``, ``bbox`` = ``[x, y, w, h]`` absolute
            pixels). Boxes are XYXY internally.
        results: COCO results list ``{"image_id", "bbox": [x, y, w, h], "score"}`` (any order:
            metrics do not depend on it).
        video_ids: evaluate only these videos (one fold, a validation split); ``None``: all.
            Results on frames of other videos are ignored.
        recalls: recall levels r of ``Pr{100r}``, ``thr{100r}``, ``FP{100r}``.
        max_dets_recall: outputs per frame of ``R{max_dets_recall}``.

    Returns:
        :class:`EvaluationResult`, with ``per_video`` at recall 0.8 and 0.9. Degenerate inputs give defined values instead of errors:
        no GT box -> AP, Pr, thr, FP and R are NaN (recall undefined); GT but no detection ->
        AP = R = 0.0, and Pr, thr, FP NaN (no operating point exists); no frame -> FP NaN.
        Frames without GT or without predictions count as frames.

    Raises:
        ValueError: a result (or annotation) whose ``image_id`` is not in ``gt["images"]`` (the
            message lists the ids), an unknown video id, or a malformed bbox / score.
    """
    recalls = tuple(float(r) for r in recalls)
    inputs = build_inputs(gt, results, video_ids)
    max_iou, argmax = best_gt_per_detection(
        inputs.det_boxes, inputs.det_frame, inputs.gt_boxes, inputs.gt_frame, inputs.num_frames
    )
    num_gt = len(inputs.gt_boxes)
    tp50 = greedy_match(max_iou, argmax, 0.5)
    recall, precision = pr_curve(tp50, num_gt)
    scores = inputs.det_scores

    grid = np.concatenate([np.asarray(recalls), FP_CURVE_RECALLS])
    thresholds = np.array([threshold_at_recall(r, recall, scores) for r in grid])
    fp = fp_per_minute(
        thresholds,
        boxes=inputs.det_boxes,
        scores=scores,
        frame=inputs.det_frame,
        frame_video=inputs.frame_video,
        gt_boxes=inputs.gt_boxes,
        gt_frame=inputs.gt_frame,
    )

    metrics: dict[str, float | int] = _ap_metrics(inputs, max_iou, argmax)
    for r in recalls:
        metrics[precision_name(r)] = precision_at_recall(r, recall, precision)
    for i, r in enumerate(recalls):
        metrics[threshold_name(r)] = float(thresholds[i])
    for i, r in enumerate(recalls):
        metrics[fp_name(r)] = float(fp[i])
    rank = per_frame_rank(inputs.det_frame, inputs.num_frames)
    metrics[recall_name(max_dets_recall)] = recall_at_k(tp50, rank, num_gt, max_dets_recall)
    metrics.update(
        num_videos=inputs.num_videos,
        num_frames=inputs.num_frames,
        num_gt_boxes=num_gt,
        num_detections=len(scores),
        max_detections_per_frame=int(rank.max()) + 1 if len(rank) else 0,
    )
    n = len(recalls)
    curves = {
        "pr": {"recall": recall, "precision": precision, "score": scores.copy()},
        "fp": {"recall": FP_CURVE_RECALLS.copy(), "fp_per_minute": fp[n:], "threshold": thresholds[n:]},
    }
    operating = {r: threshold_at_recall(r, recall, scores) for r in OPERATING_POINTS}
    return EvaluationResult(metrics=metrics, curves=curves, per_video=per_video_metrics(inputs, tp50, operating))


def _json_value(value):
    """Python scalar for JSON; NaN/inf become ``null`` so ``metrics.json`` stays strict JSON."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def _pr_rows(pr: dict[str, np.ndarray]) -> np.ndarray:
    """Indices of the PR points written to ``pr_curve.csv``: every detection where recall
    rises (the curve's corners) and the last detection, so the file has at most #GT + 1 rows
    instead of one per detection (~400k on CVA-BUS) yet draws the same curve's peaks and end."""
    recall = pr["recall"]
    if len(recall) == 0:
        return np.zeros(0, dtype=np.int64)
    rises = np.flatnonzero(np.diff(np.r_[0.0, recall]) > 0)
    return np.unique(np.r_[rises, len(recall) - 1])


def _write_csv(path: Path, columns: dict[str, np.ndarray], rows: np.ndarray) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(columns))
        for i in rows:
            writer.writerow([repr(float(col[i])) for col in columns.values()])


def _write_per_video(path: Path, per_video: dict[str, np.ndarray], patients: Mapping[int, str] | None) -> None:
    """``per_video.csv``: the per-video columns with ``patient_id`` after ``video_id`` (the
    video id where ``patients`` lacks the video); counts as integers, NaN as ``nan``."""
    videos = per_video["video_id"].tolist()
    columns = {"video_id": videos, "patient_id": [str((patients or {}).get(v, v)) for v in videos]}
    columns.update({k: v.tolist() for k, v in per_video.items() if k != "video_id"})
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(columns))
        writer.writerows(zip(*(map(_csv_value, col) for col in columns.values())))


def _csv_value(value) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def save_metrics(result: EvaluationResult, out_dir: str | Path, *, patients: Mapping[int, str] | None = None) -> dict[str, Path]:
    """Write the DVC metrics and plots of one evaluation into ``out_dir`` (created if needed).

    Files:
        ``metrics.json``: ``result.metrics`` (sorted keys; NaN written as ``null``);
        ``pr_curve.csv``: ``recall,precision,score`` of the raw IoU-0.5 curve at every recall
            rise plus the last detection;
        ``fp_curve.csv``: ``recall,fp_per_minute,threshold`` at recall 0.05 ... 0.95;
        ``per_video.csv`` (when ``result.per_video`` is not empty): one row per video,
            ``video_id, patient_id, num_frames, minutes, num_gt_boxes`` and per operating point
            ``thr80, fp_sequences80, FP80, fp_detections80, tp80, recall80`` (then ``...90``;
            :mod:`ultradet.evaluation.per_video`).

    Args:
        patients: ``{video_id: patient id}`` for ``per_video.csv``; a video without an entry
            (all of them when None) is its own patient.

    Returns:
        ``{"metrics": path, "pr_curve": path, "fp_curve": path}`` and ``"per_video"`` when written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "pr_curve": out / "pr_curve.csv", "fp_curve": out / "fp_curve.csv"}
    metrics = {k: _json_value(v) for k, v in result.metrics.items()}
    paths["metrics"].write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    pr = result.curves["pr"]
    _write_csv(paths["pr_curve"], pr, _pr_rows(pr))
    fp = result.curves["fp"]
    _write_csv(paths["fp_curve"], fp, np.arange(len(fp["recall"])))
    if result.per_video:
        paths["per_video"] = out / PER_VIDEO_FILE
        _write_per_video(paths["per_video"], result.per_video, patients)
    return paths
