"""The temporal ablation's evaluation: the metrics of a temporal model run again with its temporal
aggregation switched off (same weights, ``model.temporal.aggregate_test: false``), and how much
its detections differ from the default run's, frame by frame; written to
``temporal_ablation.json`` beside ``metrics.json``.

How much the detections change is measured on each frame's top detection (its highest-scoring
box; ties broken by the evaluation's canonical order, :mod:`ultradet.evaluation.inputs`), which
is what the operating points see first: the share of frames whose top detection is another box
(IoU < 0.5 between the two runs' top boxes, or a top box in one run only), and the mean absolute
change of its score where it is the same box. This measure is ours (the paper has no ablation
at test time).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ultradet.evaluation.inputs import EvalInputs, build_inputs
from ultradet.evaluation.matching import paired_iou

ABLATION_FILE = "temporal_ablation.json"
SAME_BOX_IOU = 0.5  # two runs' top boxes of a frame are the same box at IoU >= 0.5 (the metrics' match rule)


def top_detections(inputs: EvalInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each evaluated frame's top detection.

    Returns:
        ``(present, boxes, scores)``: bool (F,) whether the frame has a detection; float64
        (F, 4) XYXY pixels and (F,) scores of its top detection (0 where none).
    """
    present = np.zeros(inputs.num_frames, dtype=bool)
    boxes = np.zeros((inputs.num_frames, 4))
    scores = np.zeros(inputs.num_frames)
    # Detections are in canonical order (score descending): a frame's first one is its top one.
    frames, first = np.unique(inputs.det_frame, return_index=True)
    present[frames] = True
    boxes[frames] = inputs.det_boxes[first]
    scores[frames] = inputs.det_scores[first]
    return present, boxes, scores


def detection_change(
    gt: dict, reference: list[dict], other: list[dict], *, video_ids: Iterable[int] | None = None
) -> dict[str, float]:
    """How much ``other`` (e.g. the ablated run) changes the top detection of each frame of
    ``reference`` (the default run) on the same frames.

    Args:
        gt: the COCO-VID ground truth both runs were made on (its frames are the ones compared).
        reference, other: COCO results (``image_id``, ``bbox`` ``[x, y, w, h]`` pixels, ``score``).
        video_ids: compare only these videos' frames (e.g. a test fold); None: all.

    Returns:
        ``{"frames": F, "top_changed": fraction of the F frames whose top detection changed
        (another box: IoU < 0.5, or a top box in one run only; frames without detections in
        either run are unchanged), "top_score_change": mean |score difference| of the top
        detection over the frames where it is the same box (NaN when there are none)}``.

    Raises:
        EvaluationInputError: malformed inputs (:func:`ultradet.evaluation.inputs.build_inputs`).
    """
    videos = None if video_ids is None else list(video_ids)
    ref_present, ref_boxes, ref_scores = top_detections(build_inputs(gt, reference, videos))
    present, boxes, scores = top_detections(build_inputs(gt, other, videos))
    same = ref_present & present & (paired_iou(ref_boxes, boxes) >= SAME_BOX_IOU)
    changed = (ref_present | present) & ~same
    frames = len(same)
    return {
        "frames": frames,
        "top_changed": float(changed.mean()) if frames else math.nan,
        "top_score_change": float(np.abs(ref_scores - scores)[same].mean()) if same.any() else math.nan,
    }


def save_temporal_ablation(
    out_dir: str | Path,
    metrics: Mapping[str, float] | None = None,
    change: Mapping[str, float] | None = None,
    max_recall: float | None = None,
) -> Path:
    """Write ``<out_dir>/temporal_ablation.json``.

    A model with temporal aggregation: ``{"temporal_aggregation": true, "metrics": {the ablated
    run's metrics.json keys}, "max_recall": the end of its IoU-0.5 PR curve (an operating point
    above it is the evaluator's fallback, not a measurement), "change": detection_change(...)}``.
    Without (``metrics`` None, a single-frame model): ``{"temporal_aggregation": false}``.
    NaN is written as ``null``.

    Returns:
        The file's path.
    """
    if metrics is None:
        content: dict = {"temporal_aggregation": False}
    else:
        content = {
            "temporal_aggregation": True,
            "metrics": {k: _json_value(v) for k, v in metrics.items()},
            "max_recall": _json_value(max_recall),
            "change": {k: _json_value(v) for k, v in (change or {}).items()},
        }
    path = Path(out_dir) / ABLATION_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    return path


def _json_value(value) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None
