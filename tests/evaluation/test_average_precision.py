"""AP50 / AP75 / mAP: hand-computed cases, the fixed mAP divisor, and two independent checks
(a plain-loop mmdet-style reference and pycocotools' COCOeval)."""

import contextlib
import io

import numpy as np
import pytest
from evaltoy import det, make_gt

from ultradet.evaluation import evaluate
from ultradet.evaluation.average_precision import COCO_IOU_THRESHOLDS, pr_curve, voc_area_ap
from ultradet.evaluation.inputs import build_inputs
from ultradet.evaluation.matching import best_gt_per_detection, greedy_match

G0, G1, G2 = [0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]


def four_detection_case():
    """3 GT boxes over 2 frames; by score: TP, FP, TP, FP (duplicate of an already matched GT).
    recall = [1/3, 1/3, 2/3, 2/3], precision = [1, 1/2, 2/3, 1/2]."""
    gt = make_gt({1: [[G0], [G1, G2]]})
    results = [
        det(1, 0, G0, 0.9),
        det(1, 1, [70, 70, 80, 80], 0.8),
        det(1, 1, G1, 0.7),
        det(1, 0, G0, 0.6),
    ]
    return gt, results


def test_ap_of_four_detections_by_hand():
    gt, results = four_detection_case()
    result = evaluate(gt, results)
    pr = result.curves["pr"]
    np.testing.assert_allclose(pr["recall"], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(pr["precision"], [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(pr["score"], [0.9, 0.8, 0.7, 0.6])
    # Envelope [1, 2/3, 2/3, 1/2]; recall rises 0 -> 1/3 at precision 1 and 1/3 -> 2/3 at 2/3.
    assert result.metrics["AP50"] == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)  # 5/9
    assert result.metrics["AP75"] == pytest.approx(5 / 9)
    assert result.metrics["mAP"] == pytest.approx(5 / 9)


def test_voc_area_ap_uses_the_monotone_envelope():
    # Raw precision dips to 1/2 then recovers to 2/3: the envelope lifts the dip.
    assert voc_area_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert voc_area_ap(np.array([]), np.array([])) == 0.0
    assert np.isnan(voc_area_ap(np.array([np.nan]), np.array([1.0])))


def test_pr_curve_without_gt_has_nan_recall():
    recall, precision = pr_curve(np.array([False, False]), num_gt=0)
    assert np.isnan(recall).all()
    assert precision.tolist() == [0.0, 0.0]


def test_map_divides_by_ten_not_nine():
    # One GT, one detection with IoU 0.72: AP = 1 at IoU 0.50 ... 0.70 (5 thresholds), 0 above.
    gt = make_gt({1: [[[0, 0, 10, 10]]]})
    metrics = evaluate(gt, [det(1, 0, [0, 0, 10, 7.2], 0.9)]).metrics
    assert metrics["AP50"] == 1.0
    assert metrics["AP75"] == 0.0
    assert metrics["mAP"] == pytest.approx(5 / 10)  # the original: 5 / 9 = 0.556
    assert COCO_IOU_THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def test_frames_without_gt_or_predictions_are_pooled_without_crash():
    # Frame 1 has no GT (its detection is an FP), frame 2 has GT but no prediction.
    gt = make_gt({1: [[G0], [], [G1]]})
    result = evaluate(gt, [det(1, 0, G0, 0.9), det(1, 1, G1, 0.8)])
    np.testing.assert_allclose(result.curves["pr"]["recall"], [0.5, 0.5])
    np.testing.assert_allclose(result.curves["pr"]["precision"], [1.0, 0.5])
    assert result.metrics["AP50"] == pytest.approx(0.5)
    assert result.metrics["num_frames"] == 3


# ----------------------------------------------------------------------------- independent checks


def random_scene(seed: int, *, disjoint_gt: bool, videos: int = 3, frames: int = 12):
    """Random GT (0-2 boxes per frame) and 0-5 detections per frame near or away from them, with
    distinct scores (so no tie-break question arises). ``disjoint_gt``: a frame's GT boxes lie
    in different halves of the image."""
    rng = np.random.default_rng(seed)
    spec, results = {}, []
    for v in range(1, videos + 1):
        spec[v] = []
        for f in range(frames):
            gts = []
            for k in range(rng.integers(0, 3)):
                x0 = (k * 50 if disjoint_gt else 0) + rng.uniform(0, 20)
                y0, w, h = rng.uniform(0, 60), rng.uniform(10, 28), rng.uniform(10, 35)
                gts.append([x0, y0, x0 + w, y0 + h])
            spec[v].append(gts)
            for _ in range(rng.integers(0, 6)):
                if gts and rng.random() < 0.7:
                    b = np.array(gts[rng.integers(len(gts))]) + rng.normal(0, 1.5, 4)
                else:
                    x, y = rng.uniform(0, 80, 2)
                    b = np.array([x, y, x + rng.uniform(5, 20), y + rng.uniform(5, 20)])
                b[2:] = np.maximum(b[2:], b[:2] + 1)
                results.append(det(v, f, b.tolist(), float(rng.random())))
    return make_gt(spec), results


def reference_mmdet_ap(gt: dict, results: list, thr: float) -> float:
    """AP written the plain way: per frame, an IoU matrix by loops, argmax over all GT, 'covered'
    flags; then one global sort by score and the VOC all-point area by loops."""
    def area(b):
        return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])

    def overlap(a, b):
        inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = area(a) + area(b) - inter
        return inter / union if union > 0 else 0.0

    def xyxy(b):
        return [b[0], b[1], b[0] + b[2], b[1] + b[3]]

    gts = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        gts[a["image_id"]].append(xyxy(a["bbox"]))
    flagged = []  # (score, is_tp)
    for image, boxes in gts.items():
        dets = sorted((r for r in results if r["image_id"] == image), key=lambda r: -r["score"])
        covered = [False] * len(boxes)
        for r in dets:
            ious = [overlap(xyxy(r["bbox"]), g) for g in boxes]
            best = int(np.argmax(ious)) if ious else -1
            tp = best >= 0 and ious[best] >= thr and not covered[best]
            if tp:
                covered[best] = True
            flagged.append((r["score"], tp))
    flagged.sort(key=lambda x: -x[0])
    num_gt, tp_count, points = sum(len(b) for b in gts.values()), 0, []
    for i, (_, tp) in enumerate(flagged, start=1):
        tp_count += tp
        points.append((tp_count / num_gt, tp_count / i))
    rec = [0.0] + [p[0] for p in points] + [1.0]
    pre = [0.0] + [p[1] for p in points] + [0.0]
    for i in range(len(pre) - 2, -1, -1):
        pre[i] = max(pre[i], pre[i + 1])
    return sum((rec[i + 1] - rec[i]) * pre[i + 1] for i in range(len(rec) - 1) if rec[i + 1] != rec[i])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap_matches_a_plain_loop_reference_with_overlapping_gt(seed):
    gt, results = random_scene(seed, disjoint_gt=False)
    metrics = evaluate(gt, results).metrics
    refs = [reference_mmdet_ap(gt, results, t) for t in COCO_IOU_THRESHOLDS]
    assert metrics["AP50"] == pytest.approx(refs[0], abs=1e-12)
    assert metrics["AP75"] == pytest.approx(refs[5], abs=1e-12)
    assert metrics["mAP"] == pytest.approx(sum(refs) / 10, abs=1e-12)


def _our_curves(gt: dict, results: list):
    inputs = build_inputs(gt, results)
    max_iou, argmax = best_gt_per_detection(
        inputs.det_boxes, inputs.det_frame, inputs.gt_boxes, inputs.gt_frame, inputs.num_frames
    )
    return [pr_curve(greedy_match(max_iou, argmax, t), len(inputs.gt_boxes)) for t in COCO_IOU_THRESHOLDS]


@pytest.mark.parametrize("seed", [3, 4])
def test_pr_curves_match_pycocotools_where_definitions_coincide(seed):
    """COCOeval matches a detection to the best *unmatched* GT, mmdet (and we) to the argmax GT
    only if it is unmatched. The two coincide when a frame's GT boxes are disjoint (no detection
    can reach IoU >= 0.5 with two of them). Mapping, with areaRng "all", maxDets 100 (more than
    any frame has) and distinct scores:
    - per-detection TP flags: COCOeval's ``evalImgs[*]["dtMatches"] > 0`` sorted by score give
      exactly our raw recall/precision curve at each of the 10 IoU thresholds;
    - COCOeval's 101-point ``eval["precision"]`` equals our monotone envelope read at the first
      detection whose recall reaches each recall threshold (0 when none does)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, results = random_scene(seed, disjoint_gt=True)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.maxDets = [100]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
        ev.accumulate()
    scores = np.concatenate([e["dtScores"] for e in ev.evalImgs if e is not None])
    matches = np.concatenate([e["dtMatches"] for e in ev.evalImgs if e is not None], axis=1)
    order = np.argsort(-scores, kind="mergesort")
    num_gt = len(gt["annotations"])
    for t, (recall, precision) in enumerate(_our_curves(gt, results)):
        coco_tp = np.cumsum(matches[t, order] > 0)
        np.testing.assert_allclose(recall, coco_tp / num_gt)
        np.testing.assert_allclose(precision, coco_tp / np.arange(1, len(order) + 1))
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, ev.params.recThrs, side="left")
        ours_101 = np.where(idx < len(recall), envelope[np.minimum(idx, len(recall) - 1)], 0.0)
        np.testing.assert_allclose(ours_101, ev.eval["precision"][t, :, 0, 0, 0])
