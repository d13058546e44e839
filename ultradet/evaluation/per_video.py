"""Per-video metrics at the fold's operating points: the rows behind FP80/FP90 and the recall
they are measured at, so that models can be compared video by video (and patient by patient)
instead of only fold by fold.

At each operating point r (``OPERATING_POINTS``: 0.8, 0.9) the fold's score threshold ``thr_r``
is the one of the fold metrics (spec section 4, :func:`threshold_at_recall` on the fold's pooled
IoU-0.5 curve), and a video's detections kept there are those with ``score > thr_r``, as in the
FP sequences. Per video:

- ``fp_sequences<r>``: FP sequences (:mod:`ultradet.evaluation.fp_sequences`); a sequence never
  spans two videos, so each is counted in the video of its root;
- ``FP<r>``: ``fp_sequences<r>`` per minute of the video at 30 fps;
- ``tp<r>`` / ``fp_detections<r>``: kept detections that are / are not true positives of the
  fold's greedy IoU-0.5 matching (the matching of AP and Pr; it is per frame, so per video);
- ``recall<r>``: ``tp<r> / num_gt_boxes``, a fraction (NaN for a video without GT boxes).

By construction the rows sum back to the fold: ``sum(fp_sequences<r>) / sum(minutes)`` is the
fold's ``FP<r>`` and ``sum(tp<r>) / sum(num_gt_boxes)`` the fold's recall at ``thr_r`` (the recall
of the last kept detection on the fold's PR curve, at most r: ``thr_r`` interpolates between the
scores around recall r and the score equal to it is dropped). Where ``thr_r`` is NaN (no detection
or no GT in the fold) every column at r is NaN. Videos without frames have no row.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ultradet.evaluation.fp_sequences import (
    FRAMES_PER_MINUTE,
    candidate_links,
    centre_in_gt,
    fp_tree_roots,
    tree_roots,
)
from ultradet.evaluation.inputs import EvalInputs
from ultradet.evaluation.names import fp_name, recall_percent, threshold_name

PER_VIDEO_FILE = "per_video.csv"  # in results/<model>/fold<k>/, one row per test video
VIDEO_COLUMNS = ("video_id", "patient_id", "num_frames", "minutes", "num_gt_boxes")


def fp_sequences_name(recall: float) -> str:
    """FP sequences (a count) at the threshold of ``recall``: ``fp_sequences80``."""
    return f"fp_sequences{recall_percent(recall)}"


def fp_detections_name(recall: float) -> str:
    """Kept detections that are not IoU-0.5 true positives (a count): ``fp_detections80``."""
    return f"fp_detections{recall_percent(recall)}"


def tp_name(recall: float) -> str:
    """Kept IoU-0.5 true positives (a count of GT boxes detected): ``tp80``."""
    return f"tp{recall_percent(recall)}"


def video_recall_name(recall: float) -> str:
    """The video's recall at the fold's threshold of ``recall`` (a fraction): ``recall80``."""
    return f"recall{recall_percent(recall)}"


def point_columns(recall: float) -> tuple[str, ...]:
    """The columns of one operating point, in file order."""
    return (
        threshold_name(recall), fp_sequences_name(recall), fp_name(recall),
        fp_detections_name(recall), tp_name(recall), video_recall_name(recall),
    )


def per_video_metrics(inputs: EvalInputs, tp50: np.ndarray, thresholds: Mapping[float, float]) -> dict[str, np.ndarray]:
    """The per-video columns (module docstring) of one evaluation, without ``patient_id``.

    Args:
        inputs: the evaluated frames, GT and detections (canonical order).
        tp50: bool (N,) TP flags of the IoU-0.5 greedy matching of ``inputs``' detections.
        thresholds: ``{r: thr_r}``, the fold's score threshold at each recall level r.

    Returns:
        ``{column: (V,) array}`` for the V videos with frames, ascending ``video_id``:
        ``video_id num_frames num_gt_boxes`` (int64), ``minutes`` (float64, frames / 1800) and
        :func:`point_columns` of each r (float64; counts are whole numbers or NaN).
    """
    videos, row = np.unique(inputs.frame_video, return_inverse=True)
    frames = np.bincount(row, minlength=len(videos))
    columns: dict[str, np.ndarray] = {
        "video_id": videos,
        "num_frames": frames,
        "minutes": frames / FRAMES_PER_MINUTE,
        "num_gt_boxes": np.bincount(row[inputs.gt_frame], minlength=len(videos)),
    }
    for r, thr in thresholds.items():
        columns.update(_at_threshold(inputs, tp50, row, float(thr), r, columns["minutes"], columns["num_gt_boxes"]))
    return columns


def _at_threshold(
    inputs: EvalInputs, tp50: np.ndarray, row: np.ndarray, thr: float, r: float, minutes: np.ndarray, num_gt: np.ndarray
) -> dict[str, np.ndarray]:
    """The :func:`point_columns` of recall level ``r`` at score threshold ``thr``; ``row``: int
    (F,) video row of each frame; ``minutes``, ``num_gt``: (V,) per video."""
    names = point_columns(r)
    if np.isnan(thr):
        return {name: np.full(len(minutes), np.nan) for name in names}
    kept = int(np.count_nonzero(inputs.det_scores > thr))  # scores descend: a prefix
    det_row = row[inputs.det_frame[:kept]]
    tp = np.bincount(det_row[tp50[:kept]], minlength=len(minutes))
    fp_detections = np.bincount(det_row[~tp50[:kept]], minlength=len(minutes))
    sequences = fp_sequences_per_video(inputs, kept, row, len(minutes))
    recall = np.full(len(minutes), np.nan)
    np.divide(tp, num_gt, out=recall, where=num_gt > 0)
    values = (np.full(len(minutes), thr), sequences, sequences / minutes, fp_detections, tp, recall)
    return {name: np.asarray(v, dtype=np.float64) for name, v in zip(names, values)}


def fp_sequences_per_video(inputs: EvalInputs, kept: int, row: np.ndarray, num_videos: int) -> np.ndarray:
    """FP sequences of each video when the ``kept`` highest-scoring detections are kept.

    Args:
        inputs: canonical-order detections; ``row``: int (F,) video row of each frame.

    Returns:
        int64 (num_videos,); sums to the count behind ``fp_per_minute`` at the same threshold.
    """
    boxes, frame = inputs.det_boxes[:kept], inputs.det_frame[:kept]
    tp = centre_in_gt(boxes, frame, inputs.gt_boxes, inputs.gt_frame, inputs.num_frames)
    child, parent = candidate_links(boxes, frame, inputs.frame_video)
    roots = fp_tree_roots(tree_roots(kept, child, parent), tp)
    return np.bincount(row[frame[roots]], minlength=num_videos)
