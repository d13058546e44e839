"""The temporal ablation's detection change on hand-placed detections, and its file."""

from __future__ import annotations

import json
import math

import pytest
from evaltoy import det, make_gt

from ultradet.evaluation.ablation import ABLATION_FILE, detection_change, save_temporal_ablation

A = [10, 10, 30, 30]  # 20 x 20
A_SHIFTED = [12, 10, 32, 30]  # IoU with A = 360 / 440 = 0.818: the same box
A_FAR = [20, 10, 40, 30]  # IoU with A = 200 / 600 = 0.333: another box
B = [60, 60, 80, 80]


def test_top_detection_changes_frame_by_frame():
    gt = make_gt({1: [[A]] * 6, 2: [[]]})
    reference = [
        det(1, 0, A, 0.9), det(1, 0, B, 0.5),  # top A ...
        det(1, 1, A, 0.8),
        det(1, 2, A, 0.7),
        det(1, 3, A, 0.6),
        # frame 4: nothing in either run; frame 5: only in the reference
        det(1, 5, B, 0.3),
        det(2, 0, B, 0.9),  # video 2 is not compared
    ]
    other = [
        det(1, 0, A_SHIFTED, 0.7), det(1, 0, B, 0.6),  # ... still A, score 0.9 -> 0.7
        det(1, 1, A_FAR, 0.8),  # another box
        det(1, 2, B, 0.75), det(1, 2, A, 0.6),  # B overtakes A
        det(1, 3, A, 0.65),  # same box, 0.6 -> 0.65
    ]
    change = detection_change(gt, reference, other, video_ids=[1])
    assert change["frames"] == 6
    # Changed: frames 1 (IoU 0.33), 2 (B on top), 5 (gone); unchanged: 0, 3, and 4 (empty in both).
    assert change["top_changed"] == pytest.approx(3 / 6)
    assert change["top_score_change"] == pytest.approx((0.2 + 0.05) / 2)


def test_identical_runs_do_not_change():
    gt = make_gt({1: [[A], [A]]})
    results = [det(1, 0, A, 0.9), det(1, 1, B, 0.4)]
    change = detection_change(gt, results, list(reversed(results)))
    assert change == {"frames": 2, "top_changed": 0.0, "top_score_change": 0.0}


def test_no_common_top_box_has_no_score_change():
    gt = make_gt({1: [[A]]})
    change = detection_change(gt, [det(1, 0, A, 0.9)], [])
    assert change["top_changed"] == 1.0 and math.isnan(change["top_score_change"])


def test_file_of_a_temporal_and_of_a_single_frame_model(tmp_path):
    path = save_temporal_ablation(
        tmp_path / "t", {"AP50": 0.5, "FP80": math.nan, "num_frames": 10}, {"frames": 10, "top_changed": 0.1, "top_score_change": math.nan}, 0.85
    )
    assert path.name == ABLATION_FILE
    assert json.loads(path.read_text()) == {
        "temporal_aggregation": True,
        "metrics": {"AP50": 0.5, "FP80": None, "num_frames": 10},
        "max_recall": 0.85,
        "change": {"frames": 10, "top_changed": 0.1, "top_score_change": None},
    }
    assert json.loads(save_temporal_ablation(tmp_path / "s").read_text()) == {"temporal_aggregation": False}
