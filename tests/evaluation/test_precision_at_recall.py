"""Pr@R and thr@R: interpolation on the raw curve, its edge rules, and agreement with np.interp."""

import numpy as np
import pytest
from evaltoy import det, make_gt

from ultradet.evaluation import evaluate
from ultradet.evaluation.precision_at_recall import interp_at_recall, precision_at_recall, threshold_at_recall

# The four-detection curve of test_average_precision: TP, FP, TP, FP over 3 GT.
RECALL = np.array([1 / 3, 1 / 3, 2 / 3, 2 / 3])
PRECISION = np.array([1, 1 / 2, 2 / 3, 1 / 2])
SCORES = np.array([0.9, 0.8, 0.7, 0.6])


def test_interpolates_from_the_last_detection_below_to_the_first_reaching():
    # r = 0.5 lies between recall 1/3 (last detection there: precision 1/2, score .8) and 2/3
    # (first detection there: precision 2/3, score .7); halfway.
    assert precision_at_recall(0.5, RECALL, PRECISION) == pytest.approx(1 / 2 + 0.5 * (2 / 3 - 1 / 2))
    assert threshold_at_recall(0.5, RECALL, SCORES) == pytest.approx(0.75)


def test_interpolates_at_a_quarter_of_the_way():
    # Two points (recall .6, precision .9) -> (recall 1.0, precision .5): r = .7 is 1/4 of the way.
    assert precision_at_recall(0.7, np.array([0.6, 1.0]), np.array([0.9, 0.5])) == pytest.approx(0.8)
    assert threshold_at_recall(0.7, np.array([0.6, 1.0]), np.array([0.8, 0.4])) == pytest.approx(0.7)


def test_exact_recall_level_takes_the_last_detection_of_that_level():
    assert precision_at_recall(1 / 3, RECALL, PRECISION) == 1 / 2
    assert threshold_at_recall(1 / 3, RECALL, SCORES) == 0.8


def test_unreached_recall_returns_the_last_detection():
    # Final recall 2/3 < 0.9: the original's rule, kept for comparability.
    assert precision_at_recall(0.9, RECALL, PRECISION) == 1 / 2
    assert threshold_at_recall(0.9, RECALL, SCORES) == 0.6


def test_recall_below_the_first_detection_returns_the_first():
    assert precision_at_recall(0.1, RECALL, PRECISION) == 1.0
    assert threshold_at_recall(0.1, RECALL, SCORES) == 0.9


def test_undefined_curves_give_nan():
    assert np.isnan(interp_at_recall(0.8, np.array([]), np.array([])))
    assert np.isnan(interp_at_recall(0.8, np.array([np.nan]), np.array([1.0])))


def test_agrees_with_np_interp_on_random_curves_with_plateaus():
    rng = np.random.default_rng(0)
    for _ in range(50):
        tp = rng.random(30) < 0.5
        tp[0] = True
        num_gt = int(tp.sum() + rng.integers(0, 5))
        recall = np.cumsum(tp) / num_gt
        precision = np.cumsum(tp) / np.arange(1, 31)
        for r in np.linspace(0, 1, 41):
            assert interp_at_recall(r, recall, precision) == pytest.approx(np.interp(r, recall, precision), abs=1e-15)


def test_metrics_report_pr_and_thr_at_70_80_90():
    # 10 GT in 10 frames; detections by score: 7 TPs (score .95 ... .65), an FP (.6), a TP (.55),
    # then an FP (.5). Recall is exactly .7 at detections 7 and 8, exactly .8 at 9 and 10, and
    # never .9; an exactly-hit level takes its LAST detection.
    gt = make_gt({1: [[[0, 0, 10, 10]] for _ in range(10)]})
    results = [det(1, f, [0, 0, 10, 10], 0.95 - 0.05 * f) for f in range(7)]
    results += [det(1, 7, [50, 50, 60, 60], 0.6), det(1, 8, [0, 0, 10, 10], 0.55), det(1, 9, [50, 50, 60, 60], 0.5)]
    m = evaluate(gt, results).metrics
    assert m["Pr70"] == pytest.approx(7 / 8) and m["thr70"] == pytest.approx(0.6)
    assert m["Pr80"] == pytest.approx(8 / 10) and m["thr80"] == pytest.approx(0.5)
    assert m["Pr90"] == pytest.approx(8 / 10) and m["thr90"] == pytest.approx(0.5)
