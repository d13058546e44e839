"""The t interval of a mean over folds against a hand-computed case and scipy's own interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ultradet.report.intervals import t_interval


def test_hand_computed_four_folds():
    # mean 2.5, sample sd sqrt(5/3) = 1.290994, se 0.645497, t_{0.975, 3} = 3.182446 (tables)
    n, mean, low, high = t_interval([1.0, 2.0, 3.0, 4.0])
    assert (n, mean) == (4, 2.5)
    assert low == pytest.approx(2.5 - 3.182446 * 0.645497, abs=1e-5)
    assert high == pytest.approx(2.5 + 3.182446 * 0.645497, abs=1e-5)


def test_matches_scipy_and_ignores_non_finite_folds():
    x = np.array([0.91, np.nan, 0.84, 0.88, 0.95, math.inf])
    finite = x[np.isfinite(x)]
    n, mean, low, high = t_interval(x, confidence=0.9)
    expected = stats.t.interval(0.9, len(finite) - 1, loc=finite.mean(), scale=stats.sem(finite))
    assert n == 4 and mean == pytest.approx(finite.mean())
    assert (low, high) == pytest.approx(expected)


def test_no_interval_from_fewer_than_two_values():
    n, mean, low, high = t_interval([3.0])
    assert (n, mean) == (1, 3.0) and math.isnan(low) and math.isnan(high)
    n, mean, low, high = t_interval([np.nan])
    assert n == 0 and all(math.isnan(v) for v in (mean, low, high))
