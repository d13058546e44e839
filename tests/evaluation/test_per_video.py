"""Per-video metrics at the Pr80/Pr90 operating points: a hand-computed two-video case, the rows
summing back to the fold's FP80/FP90, recall and precision on random videos, and per_video.csv."""

import csv

import numpy as np
import pytest
from evaltoy import det, make_gt

from ultradet.evaluation import EvaluationResult, evaluate, save_metrics

A, B = [0, 0, 10, 10], [40, 40, 50, 50]
FAR, FAR2 = [70, 70, 80, 80], [70, 0, 80, 10]


def hand_case():
    """Video 1: 5 frames with lesion A, video 2: 5 frames with lesion B and a sixth without GT.
    By score: A .95 .9 .85 .8 (TP), B .75 .7 .65 (TP) -> recall 7/10; FAR .6 .59 .58 (video 1,
    frames 0-2, one linked sequence) and FAR .5 (video 2, frame 4) -> FP; A .3 (video 1, frame 4)
    -> recall 8/10; FAR2 .25 (video 2, frame 0) FP; B .2 -> 9/10; B .1 -> 10/10.
    thr80 = the score where recall is exactly 0.8 at its last detection: .25 (so FAR2 is dropped);
    thr90 = .2 (B .2 is dropped, FAR2 kept): the fold's recall at thr90 is 0.8, not 0.9."""
    gt = make_gt({1: [[A]] * 5, 2: [[B]] * 5 + [[]]})
    results = [det(1, f, A, s) for f, s in enumerate([0.95, 0.9, 0.85, 0.8, 0.3])]
    results += [det(2, f, B, s) for f, s in enumerate([0.75, 0.7, 0.65, 0.2, 0.1])]
    results += [det(1, f, FAR, s) for f, s in enumerate([0.6, 0.59, 0.58])]
    results += [det(2, 4, FAR, 0.5), det(2, 0, FAR2, 0.25)]
    return gt, results


def test_two_videos_by_hand():
    result = evaluate(*hand_case())
    m, rows = result.metrics, result.per_video
    assert (m["thr80"], m["thr90"]) == (pytest.approx(0.25), pytest.approx(0.2))
    assert rows["video_id"].tolist() == [1, 2]
    assert rows["num_frames"].tolist() == [5, 6] and rows["num_gt_boxes"].tolist() == [5, 5]
    np.testing.assert_allclose(rows["minutes"], [5 / 1800, 6 / 1800])
    expected = {
        "fp_sequences80": [1, 1], "FP80": [360, 300], "fp_detections80": [3, 1], "tp80": [5, 3], "recall80": [1.0, 0.6],
        "fp_sequences90": [1, 2], "FP90": [360, 600], "fp_detections90": [3, 2], "tp90": [5, 3], "recall90": [1.0, 0.6],
    }
    for column, values in expected.items():
        np.testing.assert_allclose(rows[column], values, err_msg=column)
    # the fold: 2 and 3 FP sequences in 11 frames
    assert (m["FP80"], m["FP90"]) == (pytest.approx(2 / 11 * 1800), pytest.approx(3 / 11 * 1800))
    np.testing.assert_allclose(rows["thr80"], [0.25, 0.25])


def random_fold(seed: int, num_videos: int = 5):
    """Videos of random length with a drifting lesion (absent in 20 % of frames) and detections
    near it or anywhere."""
    rng = np.random.default_rng(seed)
    gt_spec, results = {}, []
    for v in range(1, num_videos + 1):
        gt_spec[v] = []
        centre = rng.uniform(20, 80, 2)
        for f in range(int(rng.integers(20, 50))):
            centre = np.clip(centre + rng.normal(0, 2, 2), 10, 90)
            gt_spec[v].append([[*(centre - 8), *(centre + 8)]] if rng.random() < 0.8 else [])
            k = rng.integers(0, 5)
            xy = np.where(rng.random((k, 1)) < 0.6, centre + rng.normal(0, 3, (k, 2)), rng.uniform(10, 90, (k, 2)))
            wh = rng.uniform(10, 20, (k, 2))
            results += [det(v, f, [*(p - s / 2), *(p + s / 2)], float(rng.random())) for p, s in zip(xy, wh)]
    return make_gt(gt_spec), results


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rows_sum_back_to_the_fold_metrics(seed):
    gt, results = random_fold(seed)
    result = evaluate(gt, results)
    m, rows, pr = result.metrics, result.per_video, result.curves["pr"]
    assert rows["num_frames"].sum() == m["num_frames"] and rows["num_gt_boxes"].sum() == m["num_gt_boxes"]
    for p in ("80", "90"):
        assert rows[f"fp_sequences{p}"].sum() / rows["minutes"].sum() == pytest.approx(m[f"FP{p}"], rel=1e-12)
        kept = int(np.count_nonzero(pr["score"] > m[f"thr{p}"]))
        tp, fp = rows[f"tp{p}"].sum(), rows[f"fp_detections{p}"].sum()
        assert tp + fp == kept
        assert tp / rows["num_gt_boxes"].sum() == pytest.approx(pr["recall"][kept - 1], rel=1e-12)
        assert tp / kept == pytest.approx(pr["precision"][kept - 1], rel=1e-12)
        assert m[f"FP{p}"] > 0 and 0 < tp < m["num_gt_boxes"]  # not vacuous
        per_minute = rows[f"fp_sequences{p}"] / rows["minutes"]
        np.testing.assert_allclose(rows[f"FP{p}"], per_minute)


def test_a_video_subset_gets_only_its_rows_and_sums_to_its_metrics():
    gt, results = random_fold(3)
    result = evaluate(gt, results, video_ids=[2, 4])
    rows = result.per_video
    assert rows["video_id"].tolist() == [2, 4]
    assert rows["fp_sequences80"].sum() / rows["minutes"].sum() == pytest.approx(result.metrics["FP80"], rel=1e-12)


def test_no_detection_gives_nan_at_the_operating_points():
    rows = evaluate(make_gt({1: [[A], [A]]}), []).per_video
    assert rows["num_gt_boxes"].tolist() == [2]
    assert all(np.isnan(rows[c]).all() for c in ("thr80", "FP80", "tp90", "recall90"))


def test_per_video_csv_names_patients_and_writes_counts_as_integers(tmp_path):
    gt, results = hand_case()
    paths = save_metrics(evaluate(gt, results), tmp_path, patients={1: "anna"})
    with paths["per_video"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:5] == ["video_id", "patient_id", "num_frames", "minutes", "num_gt_boxes"]
    assert [(r["video_id"], r["patient_id"]) for r in rows] == [("1", "anna"), ("2", "2")]  # no entry: its own patient
    assert (rows[1]["fp_sequences90"], rows[1]["tp80"], rows[1]["FP90"]) == ("2", "3", "600")
    assert float(rows[0]["minutes"]) == pytest.approx(5 / 1800)


def test_no_per_video_rows_no_file(tmp_path):
    result = EvaluationResult(
        metrics={"AP50": 0.5},
        curves={"pr": {k: np.zeros(0) for k in ("recall", "precision", "score")},
                "fp": {k: np.array([0.05]) for k in ("recall", "fp_per_minute", "threshold")}},
    )
    assert "per_video" not in save_metrics(result, tmp_path)
    assert not (tmp_path / "per_video.csv").exists()
