"""R@16: the per-frame cap on outputs and the greedy matching it reuses."""

import numpy as np
import pytest
from evaltoy import det, make_gt

from ultradet.evaluation import evaluate
from ultradet.evaluation.recall import recall_at_k

A, B = [0, 0, 10, 10], [50, 50, 60, 60]


def frame_with_hit_at_rank(rank: int) -> list:
    """Frame 0 of video 1: 20 detections; only the one at ``rank`` (0-based, by score) hits A."""
    return [det(1, 0, A if i == rank else [80, 80, 90, 90], 0.9 - 0.01 * i) for i in range(20)]


def test_only_the_16_highest_scoring_outputs_of_a_frame_count():
    gt = make_gt({1: [[A], [B]]})
    inside = frame_with_hit_at_rank(15) + [det(1, 1, B, 0.5)]
    outside = frame_with_hit_at_rank(16) + [det(1, 1, B, 0.5)]
    assert evaluate(gt, inside).metrics["R16"] == 1.0
    assert evaluate(gt, outside).metrics["R16"] == 0.5
    assert evaluate(gt, outside).curves["pr"]["recall"][-1] == 1.0  # uncapped recall is 1


def test_max_dets_recall_sets_the_cap_and_the_key():
    gt = make_gt({1: [[A]]})
    metrics = evaluate(gt, frame_with_hit_at_rank(3), max_dets_recall=3).metrics
    assert metrics["R3"] == 0.0 and "R16" not in metrics
    assert evaluate(gt, frame_with_hit_at_rank(3), max_dets_recall=4).metrics["R4"] == 1.0


def test_duplicates_do_not_add_recall_and_iou_half_counts():
    gt = make_gt({1: [[A, B]]})
    results = [det(1, 0, A, 0.9), det(1, 0, A, 0.8), det(1, 0, [50, 50, 60, 55], 0.7)]  # IoU(B) = .5
    assert evaluate(gt, results).metrics["R16"] == 1.0
    assert evaluate(gt, results[:2]).metrics["R16"] == 0.5


def test_recall_at_k_by_hand_and_without_gt():
    tp = np.array([True, True, False, True])
    rank = np.array([0, 2, 1, 0])
    assert recall_at_k(tp, rank, num_gt=4, max_dets=2) == pytest.approx(2 / 4)
    assert np.isnan(recall_at_k(tp, rank, num_gt=0))
