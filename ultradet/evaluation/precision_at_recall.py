"""Precision and score threshold at a recall level (spec section 4, "Pr80 / Pr90" and "Score
thresholds for FP metrics"): ``np.interp(r, recall, precision)`` and
``np.interp(r, recall, sorted_scores)`` on the raw (non-enveloped) IoU-0.5 curve.

``np.interp`` requires strictly increasing sample points, but the recall curve has plateaus
(every FP repeats the previous recall), so we implement the same rule explicitly:
- ``j`` = the LAST detection with ``recall[j] <= r``;
- ``recall[j] == r``: the value at ``j`` (the last detection of that recall level);
- otherwise linear interpolation between ``j`` (the last detection at the lower recall level)
  and ``j + 1`` (the first detection reaching the higher level);
- ``r`` beyond the final recall: the value at the last detection (kept from the original for
  comparability with the paper: a detector that never reaches ``r`` gets the precision, and the
  score threshold, of its lowest-scoring detection);
- ``r`` below the first detection's recall: the value at the first detection.
This is exactly what ``np.interp`` returns on such curves; the tests check the two agree.
"""

from __future__ import annotations

import numpy as np


def interp_at_recall(r: float, recall: np.ndarray, values: np.ndarray) -> float:
    """Value of the curve ``values`` (precision or score, one per detection) at recall ``r``.

    Args:
        r: recall level in [0, 1].
        recall: float (N,), non-decreasing, from ``average_precision.pr_curve``.
        values: float (N,), aligned with ``recall``.

    Returns:
        The interpolated value (rule in the module docstring); NaN when there are no detections
        or recall is undefined (no GT).
    """
    n = len(recall)
    if n == 0 or np.isnan(recall[0]):
        return float("nan")
    j = int(np.searchsorted(recall, r, side="right")) - 1
    if j < 0:
        return float(values[0])
    if j == n - 1 or recall[j] == r:
        return float(values[j])
    slope = (values[j + 1] - values[j]) / (recall[j + 1] - recall[j])
    return float(values[j] + slope * (r - recall[j]))


def precision_at_recall(r: float, recall: np.ndarray, precision: np.ndarray) -> float:
    """Pr@r (spec section 4): raw-curve precision at recall ``r``, a fraction in [0, 1]."""
    return interp_at_recall(r, recall, precision)


def threshold_at_recall(r: float, recall: np.ndarray, scores: np.ndarray) -> float:
    """thr_r (spec section 4): the score threshold of the FP metrics at recall ``r``.

    Args:
        scores: float (N,), the detections' scores in canonical (descending) order.
    """
    return interp_at_recall(r, recall, scores)
