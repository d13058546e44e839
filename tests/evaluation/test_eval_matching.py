"""IoU convention, per-frame pair enumeration and the greedy (mmdet) matching rule."""

import numpy as np
import pytest

from ultradet.evaluation.matching import (
    best_gt_per_detection,
    greedy_match,
    paired_iou,
    per_frame_rank,
    segment_pairs,
)


def iou(a, b) -> float:
    return float(paired_iou(np.array([a], float), np.array([b], float))[0])


def test_iou_is_pixel_continuous_without_plus_one():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [0, 0, 10, 5]) == 0.5  # 50 / 100; with +1 it would be 66/121
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges share no area
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_iou_of_empty_boxes_is_zero_not_nan():
    assert iou([5, 5, 5, 5], [5, 5, 5, 5]) == 0.0


def test_segment_pairs_enumerates_each_segment_product():
    # segment 0: a in {0, 1} x b in {10}; segment 1: a in {} ; segment 2: a in {2} x b in {11, 12}
    ia, ib = segment_pairs(np.array([0, 2, 2]), np.array([2, 0, 1]), np.array([10, 11, 11]), np.array([1, 3, 2]))
    assert list(zip(ia.tolist(), ib.tolist())) == [(0, 10), (1, 10), (2, 11), (2, 12)]


def test_best_gt_takes_max_iou_first_gt_on_ties_and_minus_one_without_gt():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], float)  # frame 0: two equal GTs
    gt_frame = np.array([0, 0, 0])
    dets = np.array([[0, 0, 10, 5], [21, 21, 31, 31], [0, 0, 10, 10]], float)
    det_frame = np.array([0, 0, 1])  # frame 1 has no GT
    max_iou, argmax = best_gt_per_detection(dets, det_frame, gt, gt_frame, num_frames=2)
    assert max_iou.tolist() == pytest.approx([0.5, 81 / 119, 0.0])
    assert argmax.tolist() == [0, 2, -1]


def test_greedy_match_uses_argmax_over_all_gt_like_mmdet():
    # Frame 0: GT A = [0,0,10,10], GT B = [8,0,18,10]. Det 1 (score .9) = A exactly -> TP on A.
    # Det 2 (score .8) = [2,0,12,10]: IoU(A) = 80/120 = .667, IoU(B) = 40/160 = .25 -> argmax A,
    # already taken -> FP, although B is free (COCO would not try B either: .25 < .5).
    # Det 3 (score .7) = [6,0,16,10]: IoU(A) = 40/160, IoU(B) = 80/120 -> TP on B.
    gt = np.array([[0, 0, 10, 10], [8, 0, 18, 10]], float)
    dets = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [6, 0, 16, 10]], float)
    max_iou, argmax = best_gt_per_detection(dets, np.zeros(3, int), gt, np.zeros(2, int), num_frames=1)
    assert greedy_match(max_iou, argmax, 0.5).tolist() == [True, False, True]
    # At IoU .7 only the exact hit qualifies.
    assert greedy_match(max_iou, argmax, 0.7).tolist() == [True, False, False]


def test_greedy_match_threshold_is_inclusive():
    max_iou, argmax = np.array([0.5, 0.5]), np.array([0, 1])
    assert greedy_match(max_iou, argmax, 0.5).tolist() == [True, True]
    assert greedy_match(max_iou, argmax, 0.55).tolist() == [False, False]


def test_greedy_match_keeps_frames_apart_through_global_gt_indices():
    # The same GT index can only be matched once; different frames have different GT indices.
    max_iou = np.array([0.9, 0.9, 0.9])
    argmax = np.array([0, 1, 0])
    assert greedy_match(max_iou, argmax, 0.5).tolist() == [True, True, False]


def test_per_frame_rank_counts_within_frame_in_canonical_order():
    assert per_frame_rank(np.array([1, 0, 1, 1, 0]), num_frames=3).tolist() == [0, 0, 1, 2, 1]
