"""The smallest difference a paired design could detect: the minimum detectable difference (MDD)
of a mean of paired differences.

``MDD = (z_{1 - alpha/2} + z_{power}) * sd / sqrt(n)``, ``sd`` the sample sd (ddof=1) of the n
paired differences: the true mean difference that a two-sided level-alpha test of "mean 0" finds
with probability ``power``, under the normal approximation. With alpha = 0.05 and power 0.8 the
factor is 1.960 + 0.842 = 2.80 (the one-sample / paired-difference sample-size formula, e.g.
Chow, Shao & Wang, *Sample Size Calculations in Clinical Research*, 2nd ed. 2008, section 3.1,
solved for the difference; van Belle, *Statistical Rules of Thumb*, 2nd ed. 2008, chapter 2).

The same formula serves the fold level (n folds) and the patient level (n patients), so the two
designs are compared on one scale. With few folds it is optimistic: a t-based MDD at n = 4
(t quantiles with 3 degrees of freedom, 3.18 + 0.98) would be 1.5 times as large.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8


def mdd_factor(alpha: float = ALPHA, power: float = POWER) -> float:
    """``z_{1 - alpha/2} + z_{power}`` (2.80 at the defaults)."""
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def minimum_detectable_difference(diff: np.ndarray, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """MDD of the mean of ``diff`` (module docstring), in the units of ``diff`` (e.g. FP sequences
    per minute, or a fraction for precision and recall).

    Args:
        diff: float (n,) paired differences; non-finite entries are left out.

    Returns:
        The MDD, >= 0; NaN when fewer than two differences are finite.
    """
    diff = np.asarray(diff, dtype=np.float64)
    diff = diff[np.isfinite(diff)]
    if len(diff) < 2:
        return math.nan
    return mdd_factor(alpha, power) * float(diff.std(ddof=1)) / math.sqrt(len(diff))
