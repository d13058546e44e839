"""Confidence intervals of a mean over a few values (folds): the two-sided Student t interval
``mean +- t_{(1 + CONFIDENCE) / 2, n - 1} * sd / sqrt(n)`` with the sample sd (ddof 1), the
textbook small-sample interval (e.g. Wasserman, *All of Statistics*, section 10.4)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[int, float, float, float]:
    """``(n, mean, low, high)`` of the finite entries of ``values`` (any 1-D array-like).

    ``low``/``high`` are NaN when fewer than two values are finite (no spread to estimate);
    ``mean`` is NaN when none is.
    """
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return n, mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return n, mean, mean - half, mean + half
