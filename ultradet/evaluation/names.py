"""The names of the metrics in ``metrics.json``, written once.

``evaluate`` produces them, the evaluation CLI prints them, the report aggregates them into the
table and the MLflow parent runs, the tuner optimises one of them: all take the names from here.
Pr/thr/FP are named by their recall level in percent (``Pr80``: precision at recall 0.8), R by
its cap on outputs per frame (``R16``).
"""

from __future__ import annotations

RECALL_LEVELS = (0.7, 0.8, 0.9)  # recall levels of Pr, thr and FP (spec section 4)
OPERATING_POINTS = (0.8, 0.9)  # recall levels of the paper's Pr and FP columns (Pr80, FP80, Pr90, FP90)
MAX_DETS_RECALL = 16  # outputs per frame of R@16 (spec section 4)


def recall_percent(recall: float) -> str:
    """``0.8`` -> ``"80"``."""
    return f"{round(recall * 100):d}"


def precision_name(recall: float) -> str:
    """Precision at ``recall``: ``Pr80``."""
    return f"Pr{recall_percent(recall)}"


def threshold_name(recall: float) -> str:
    """Score threshold at ``recall``: ``thr80``."""
    return f"thr{recall_percent(recall)}"


def fp_name(recall: float) -> str:
    """False-positive sequences per minute at ``recall``: ``FP80``."""
    return f"FP{recall_percent(recall)}"


def recall_name(max_dets: int) -> str:
    """Recall with at most ``max_dets`` outputs per frame: ``R16``."""
    return f"R{max_dets}"


AP_METRICS = ("AP50", "AP75", "mAP")
PRECISION_METRICS = tuple(precision_name(r) for r in RECALL_LEVELS)
THRESHOLD_METRICS = tuple(threshold_name(r) for r in RECALL_LEVELS)
FP_METRICS = tuple(fp_name(r) for r in RECALL_LEVELS)
RECALL_METRIC = recall_name(MAX_DETS_RECALL)
FPS_METRIC = "FPS"  # added by the evaluate stage from timing.json, not by evaluate()
# max_detections_per_frame: the most outputs of one frame; above MAX_DETS_RECALL, R@16 counts only
# the best 16 of a frame while AP, Pr and FP count all (RetinaNet emits up to 100, baselines spec 2.1).
COUNT_KEYS = ("num_videos", "num_frames", "num_gt_boxes", "num_detections", "max_detections_per_frame")

# Fractions in [0, 1] in metrics.json (the report shows them in percent).
FRACTION_METRICS = AP_METRICS + PRECISION_METRICS + (RECALL_METRIC,)
# Every metric of the results table (summary.json, paper_table.csv, the MLflow parent runs).
TABLE_METRICS = AP_METRICS + PRECISION_METRICS + FP_METRICS + (RECALL_METRIC, FPS_METRIC)
# The paper's columns, in its order.
PAPER_METRICS = (precision_name(0.8), precision_name(0.9), fp_name(0.8), fp_name(0.9), "AP50", RECALL_METRIC, FPS_METRIC)
