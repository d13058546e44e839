"""Precision-recall curve and VOC all-point AP over frames pooled as independent images
(spec section 4, "AP50 / AP75 / mAP"; the mmdet ``eval_map`` definition with ``dataset=None``).

Fixed defect: the original's mAP summed the 10 APs at IoU 0.50:0.05:0.95 and divided by 9; ours
is their mean (divides by 10).
"""

from __future__ import annotations

import numpy as np

# IoU 0.50, 0.55, ..., 0.95 as k / 100 so each threshold is the float nearest its decimal
# (0.5 + 0.05 * k accumulates rounding error, e.g. 0.6000000000000001).
COCO_IOU_THRESHOLDS = np.arange(50, 100, 5) / 100.0


def pr_curve(tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """The raw (non-enveloped) precision-recall curve, one point per detection.

    Args:
        tp: bool (N,) TP flags of all pooled detections in canonical order (score descending).
        num_gt: number of GT boxes of the evaluated frames.

    Returns:
        ``recall`` = cumTP / num_gt and ``precision`` = cumTP / (cumTP + cumFP), float64 (N,).
        With ``num_gt == 0`` recall is all NaN (undefined), precision is still defined.
    """
    cum_tp = np.cumsum(tp, dtype=np.float64)
    precision = cum_tp / np.arange(1, len(tp) + 1, dtype=np.float64)
    recall = cum_tp / num_gt if num_gt > 0 else np.full(len(tp), np.nan)
    return recall, precision


def voc_area_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC all-point AP ("area" mode): pad recall with 0 and 1 and precision with 0 and 0, make
    precision non-increasing from the right (the envelope), and sum
    ``(r[i+1] - r[i]) * p[i+1]`` where recall changes.

    Args:
        recall, precision: float (N,) raw curve from :func:`pr_curve`.

    Returns:
        AP in [0, 1]; 0.0 with no detections; NaN if recall is NaN (no GT).
    """
    if len(recall) and np.isnan(recall[0]):
        return float("nan")
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    change = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


def average_precision(tp: np.ndarray, num_gt: int) -> float:
    """VOC all-point AP of pooled detections (canonical order) given their TP flags at one IoU
    threshold. NaN when ``num_gt == 0``."""
    if num_gt == 0:
        return float("nan")
    return voc_area_ap(*pr_curve(tp, num_gt))
