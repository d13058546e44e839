"""evaluate(): the metrics.json contract, input-order invariance, subsets, errors, degenerate
inputs, and save_metrics()."""

import csv
import json
import math
import random
import re

import numpy as np
import pytest
from evaltoy import det, image_id, make_gt

from ultradet.evaluation import EvaluationInputError, EvaluationResult, evaluate, save_metrics

A, B, FAR = [0, 0, 10, 10], [20, 20, 40, 40], [70, 70, 80, 80]
KEYS = ("AP50 AP75 mAP Pr70 Pr80 Pr90 thr70 thr80 thr90 FP70 FP80 FP90 R16 "
        "num_videos num_frames num_gt_boxes num_detections max_detections_per_frame").split()


def two_videos():
    gt = make_gt({1: [[A], [A], [], [A]], 2: [[B], [B, A], [B]]})
    results = [
        det(1, 0, A, 0.9), det(1, 1, [0, 0, 10, 9], 0.8), det(1, 2, FAR, 0.7), det(1, 3, FAR, 0.6),
        det(2, 0, B, 0.85), det(2, 1, [21, 20, 41, 40], 0.75), det(2, 1, A, 0.55), det(2, 2, FAR, 0.65),
    ]
    return gt, results


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) if isinstance(a[k], float) and math.isnan(a[k]) else a[k] == b[k]
        for k in a
    )


def test_metrics_have_exactly_the_contract_keys_and_counts():
    gt, results = two_videos()
    m = evaluate(gt, results).metrics
    assert list(m) == KEYS
    assert (m["num_videos"], m["num_frames"], m["num_gt_boxes"], m["num_detections"]) == (2, 7, 7, 8)
    assert m["max_detections_per_frame"] == 2  # video 2, frame 1
    assert all(0.0 <= m[k] <= 1.0 for k in ("AP50", "AP75", "mAP", "Pr70", "Pr80", "Pr90", "R16"))


def test_whole_suite_by_hand_on_two_videos():
    """By score: .9 A TP, .85 B TP, .8 TP (IoU .9), .75 TP (IoU 380/420 = .905), .7 / .65 / .6 FP
    (FAR), .55 TP (A in video 2, frame 1). 7 GT boxes."""
    gt, results = two_videos()
    m = evaluate(gt, results).metrics
    ap_low = 4 / 7 * 1 + 1 / 7 * 5 / 8  # envelope 1 up to recall 4/7, then 5/8 up to 5/7
    assert m["AP50"] == pytest.approx(ap_low) and m["AP75"] == pytest.approx(ap_low)
    # IoU .50 ... .90 (9 thresholds) keep all TPs; at .95 only the three exact boxes are TPs.
    ap_95 = 2 / 7 * 1 + 1 / 7 * 3 / 8
    assert m["mAP"] == pytest.approx((9 * ap_low + ap_95) / 10)
    # r = .7 lies 0.9 of the way from recall 4/7 (last such detection: p 4/7, score .6) to 5/7
    # (p 5/8, score .55); .8 and .9 are never reached -> the last detection.
    assert m["Pr70"] == pytest.approx(4 / 7 + 0.9 * (5 / 8 - 4 / 7)) and m["thr70"] == pytest.approx(0.555)
    assert m["Pr80"] == m["Pr90"] == pytest.approx(5 / 8) and m["thr80"] == m["thr90"] == pytest.approx(0.55)
    # Above .555 and .55 the .55 detection is dropped; trees: video 1 {A, A'} TP and {FAR, FAR}
    # FP, video 2 {B, B'} TP and {FAR} FP: 2 FP sequences in 7 frames.
    assert m["FP70"] == m["FP80"] == m["FP90"] == pytest.approx(2 / 7 * 1800)
    assert m["R16"] == pytest.approx(5 / 7)


def test_curves_have_one_pr_point_per_detection_and_a_19_point_fp_curve():
    gt, results = two_videos()
    curves = evaluate(gt, results).curves
    assert {k: len(v) for k, v in curves["pr"].items()} == {"recall": 8, "precision": 8, "score": 8}
    np.testing.assert_allclose(curves["fp"]["recall"], np.arange(1, 20) / 20)
    assert curves["fp"]["fp_per_minute"].shape == (19,)
    m = evaluate(gt, results).metrics
    assert curves["fp"]["fp_per_minute"][[13, 15, 17]].tolist() == [m["FP70"], m["FP80"], m["FP90"]]


def test_shuffling_results_changes_nothing_even_with_tied_scores():
    rng = np.random.default_rng(0)
    spec = {v: [[[10, 10, 30, 30]] if f % 3 else [] for f in range(15)] for v in (1, 2, 3)}
    gt = make_gt(spec)
    results = []
    for v in spec:
        for f in range(15):
            for _ in range(rng.integers(0, 4)):
                x, y = rng.uniform(5, 15, 2)
                # scores on a coarse grid: many ties across and within frames
                results.append(det(v, f, [x, y, x + 20, y + 20], float(rng.integers(1, 5)) / 5))
    reference = evaluate(gt, results)
    for seed in range(3):
        shuffled = results[:]
        random.Random(seed).shuffle(shuffled)
        again = evaluate(gt, shuffled)
        assert same(again.metrics, reference.metrics)
        for curve in ("pr", "fp"):
            for key, values in reference.curves[curve].items():
                np.testing.assert_array_equal(again.curves[curve][key], values)


def test_unknown_image_id_is_an_error_naming_it():
    gt, results = two_videos()
    with pytest.raises(ValueError, match=r"image_id not in the ground truth.*: 5, 77777"):
        evaluate(gt, results + [{"image_id": 77777, "bbox": A, "score": 0.5}, {"image_id": 5, "bbox": A, "score": 0.1}])


def test_unknown_video_id_and_bad_boxes_are_errors():
    gt, results = two_videos()
    with pytest.raises(ValueError, match="video_ids not in the ground truth's videos"):
        evaluate(gt, results, video_ids=[1, 9])
    with pytest.raises(ValueError, match="bbox"):
        evaluate(gt, [{"image_id": image_id(1, 0), "bbox": [0, 0, 10], "score": 0.5}])
    with pytest.raises(ValueError, match="score"):
        evaluate(gt, [{"image_id": image_id(1, 0), "bbox": A, "score": float("nan")}])


def test_video_subset_equals_evaluating_that_video_alone():
    gt, results = two_videos()
    subset = evaluate(gt, results, video_ids=[2]).metrics
    alone_gt = make_gt({2: [[B], [B, A], [B]]})
    alone = evaluate(alone_gt, [r for r in results if r["image_id"] // 1000 == 2]).metrics
    assert same(subset, alone)
    assert (subset["num_videos"], subset["num_frames"], subset["num_detections"]) == (1, 3, 4)


def test_results_are_explicit_inputs_nothing_is_remembered():
    """The original re-loaded prediction files by glob, stale ones included; here only the list
    passed in is evaluated, and an earlier call leaves no trace."""
    gt, results = two_videos()
    fresh = evaluate(gt, results[:3]).metrics
    evaluate(gt, results)
    assert same(evaluate(gt, results[:3]).metrics, fresh)
    assert fresh["num_detections"] == 3


def test_video_without_any_prediction_counts_its_frames_and_gt():
    gt, results = two_videos()
    only_video_1 = [r for r in results if r["image_id"] // 1000 == 1]
    m = evaluate(gt, only_video_1).metrics
    assert (m["num_frames"], m["num_gt_boxes"]) == (7, 7)
    assert m["R16"] == pytest.approx(2 / 7)


def test_no_gt_at_all_gives_nan_not_a_crash():
    gt = make_gt({1: [[], []]})
    m = evaluate(gt, [det(1, 0, A, 0.9)]).metrics
    for key in ("AP50", "AP75", "mAP", "Pr80", "thr80", "FP80", "R16"):
        assert math.isnan(m[key]), key
    assert m["num_gt_boxes"] == 0


def test_no_detections_give_zero_ap_and_recall_and_undefined_operating_points():
    gt = make_gt({1: [[A], []]})
    m = evaluate(gt, []).metrics
    assert (m["AP50"], m["mAP"], m["R16"]) == (0.0, 0.0, 0.0)
    for key in ("Pr80", "thr80", "FP80"):
        assert math.isnan(m[key]), key


def test_empty_video_selection_is_defined():
    gt = make_gt({1: [[A]]})
    gt["videos"].append({"id": 2, "name": "benign/empty"})
    m = evaluate(gt, [det(1, 0, A, 0.9)], video_ids=[2]).metrics
    assert (m["num_videos"], m["num_frames"], m["num_detections"]) == (1, 0, 0)
    assert math.isnan(m["AP50"]) and math.isnan(m["FP80"])


def test_save_metrics_writes_dvc_metrics_and_plots(tmp_path):
    gt, results = two_videos()
    result = evaluate(gt, results)
    (tmp_path / "metrics.json").write_text('{"stale": 1}')
    paths = save_metrics(result, tmp_path)
    saved = json.loads(paths["metrics"].read_text())
    assert set(saved) == set(KEYS)  # the stale file is replaced, not merged
    assert saved["AP50"] == pytest.approx(result.metrics["AP50"])
    with paths["pr_curve"].open() as fh:
        rows = list(csv.DictReader(fh))
    # one row per recall rise (detections 1-4 and 8 of two_videos) plus the last detection (8)
    assert [float(r["recall"]) for r in rows] == pytest.approx([1 / 7, 2 / 7, 3 / 7, 4 / 7, 5 / 7])
    assert float(rows[-1]["precision"]) == pytest.approx(result.curves["pr"]["precision"][-1])
    with paths["fp_curve"].open() as fh:
        fp_rows = list(csv.DictReader(fh))
    assert [float(r["recall"]) for r in fp_rows] == pytest.approx(np.arange(1, 20) / 20)
    assert list(fp_rows[0]) == ["recall", "fp_per_minute", "threshold"]


def test_save_metrics_writes_nan_as_null(tmp_path):
    result = EvaluationResult(
        metrics={"AP50": float("nan"), "num_frames": np.int64(3), "FPS": 12.5},
        curves={"pr": {k: np.zeros(0) for k in ("recall", "precision", "score")},
                "fp": {k: np.array([0.05]) for k in ("recall", "fp_per_minute", "threshold")}},
    )
    save_metrics(result, tmp_path / "out")
    text = (tmp_path / "out" / "metrics.json").read_text()
    assert json.loads(text) == {"AP50": None, "FPS": 12.5, "num_frames": 3}
    assert "NaN" not in text


def test_negative_width_or_height_is_an_error_naming_the_entry():
    # Such boxes used to pass and shift every metric.
    gt, results = two_videos()
    bad = {"image_id": image_id(2, 1), "bbox": [30, 30, -5, 10], "score": 0.3}
    with pytest.raises(EvaluationInputError, match=re.escape(
        f"results[{len(results)}] (image_id {image_id(2, 1)}: video benign/video2 frame 1): bbox [30, 30, -5, 10] "
        "has negative width or height (1 such results entries)"
    )):
        evaluate(gt, results + [bad])
    assert evaluate(gt, results + [{**bad, "bbox": [30, 30, 0, 10]}]).metrics["num_detections"] == len(results) + 1


def test_nan_score_names_the_entry():
    gt, results = two_videos()
    results = results + [{"image_id": image_id(1, 2), "bbox": A, "score": float("nan")}]
    with pytest.raises(EvaluationInputError, match=re.escape(
        f"results[{len(results) - 1}] (image_id {image_id(1, 2)}: video benign/video1 frame 2): score nan is not a finite number"
    )):
        evaluate(gt, results)


def test_missing_bbox_names_video_and_frame():
    gt, results = two_videos()
    del gt["annotations"][1]["bbox"]
    image = next(im for im in gt["images"] if im["id"] == gt["annotations"][1]["image_id"])
    with pytest.raises(EvaluationInputError, match=re.escape(
        f"annotations[1] (image_id {image['id']}: video benign/video{image['video_id']} frame {image['frame_id']}): no 'bbox'"
    )):
        evaluate(gt, results)


def test_ground_truth_without_videos_is_one_clear_error():
    gt, results = two_videos()
    del gt["videos"]
    with pytest.raises(EvaluationInputError, match="the ground truth has no 'videos' list"):
        evaluate(gt, results)


@pytest.mark.parametrize(
    "bbox, problem",
    [
        ([300, 20, 10, 10], "box [300, 20, 10, 10] (xywh) lies outside the 100x100 frame"),
        ([95, 20, 6, 10], "box [95, 20, 6, 10] (xywh) lies outside the 100x100 frame"),  # 1 px past the edge
        ([-1, 20, 10, 10], "box [-1, 20, 10, 10] (xywh) lies outside the 100x100 frame"),
        ([20, 20, 0, 10], "box [20, 20, 0, 10] has non-positive size"),
    ],
)
def test_ground_truth_box_the_prepare_stage_refuses_is_an_error(bbox, problem):
    # Such a box used to be scored: an unreachable GT box lowers recall and AP silently.
    gt, results = two_videos()
    gt["annotations"][2]["bbox"] = bbox
    image = next(im for im in gt["images"] if im["id"] == gt["annotations"][2]["image_id"])
    with pytest.raises(EvaluationInputError, match=re.escape(
        f"annotations[2] (image_id {image['id']}: video benign/video{image['video_id']} frame {image['frame_id']}): "
        f"{problem} (1 such annotations); the prepare stage refuses such a dataset"
    )):
        evaluate(gt, results)


def test_ground_truth_box_within_the_tolerance_is_scored():
    # The prepare stage's tolerance (ultradet.box_rules.BOX_TOLERANCE_PX): rounded coordinates pass.
    gt, results = two_videos()
    gt["annotations"][2]["bbox"] = [-0.5, 20, 100.5, 10]
    assert evaluate(gt, results).metrics["num_gt_boxes"] == len(gt["annotations"])


def test_annotated_image_without_size_is_an_error():
    gt, results = two_videos()
    del gt["images"][0]["width"]
    with pytest.raises(EvaluationInputError, match=re.escape(
        f"images[] entry of image_id {gt['images'][0]['id']} has no numeric 'width' and 'height'"
    )):
        evaluate(gt, results)
