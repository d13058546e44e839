"""R@16: recall at IoU >= 0.5 with at most 16 outputs per frame (spec section 4, "R@16").

The original used all detections of a frame (``maxDets=None``) and relied on the detectors
emitting at most 16; we cap explicitly at the ``max_dets`` highest-scoring detections of each
frame (canonical order), so a detector that emits more cannot inflate R@16.
"""

from __future__ import annotations

import numpy as np


def recall_at_k(tp: np.ndarray, rank: np.ndarray, num_gt: int, max_dets: int = 16) -> float:
    """Fraction of all GT boxes matched by the top-``max_dets`` detections of their frame.

    The greedy matching visits a frame's detections by score, so dropping its lower-ranked
    detections cannot change the TP flags of the kept ones: the flags of the full IoU-0.5
    matching restricted to rank < ``max_dets`` are the capped matching's flags.

    Args:
        tp: bool (N,) TP flags at IoU 0.5 (``matching.greedy_match``).
        rank: int (N,) rank of each detection within its frame (0 = highest score).
        num_gt: number of GT boxes of the evaluated frames.
        max_dets: outputs per frame considered.

    Returns:
        Recall in [0, 1]; NaN when ``num_gt == 0``.
    """
    if num_gt == 0:
        return float("nan")
    return float(np.count_nonzero(tp & (rank < max_dets)) / num_gt)
