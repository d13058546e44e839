"""False positives by cause: each cause and its boundaries on hand-placed boxes, ties, lesion
before mimic, sequences by majority, totals equal to the fold's FP metrics, a plain-loop
reference on random videos, without a sidecar, a sidecar of another dataset, the CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from evaltoy import det, image_id, make_gt

from ultradet import mimic_sidecar
from ultradet.evaluation import EvaluationInputError, evaluate, fp_by_cause, save_fp_causes
from ultradet.evaluation.fp_causes import CSV_COLUMNS, cause_names, classify

LESION = [10, 10, 30, 30]
DUCT = [50, 50, 70, 70]
SHADOW = [0, 60, 20, 80]


def _classify(boxes, frames, gt, mimics, num_frames=2):
    """Cause names of ``boxes`` (XYXY, one frame index each) against ``gt`` [(frame, box)] and
    ``mimics`` [(frame, box, kind)] of the kinds duct and shadow."""
    kinds = ("duct", "shadow")
    arr = lambda rows: np.array(rows, dtype=np.float64).reshape(-1, 4)
    cause = classify(
        arr(boxes), np.array(frames), num_frames,
        gt_boxes=arr([b for _, b in gt]), gt_frame=np.array([f for f, _ in gt], dtype=np.int64),
        mimic_boxes=arr([b for _, b, _ in mimics]), mimic_frame=np.array([f for f, _, _ in mimics], dtype=np.int64),
        mimic_kind=np.array([kinds.index(k) for _, _, k in mimics], dtype=np.int64), num_kinds=2,
    )
    return [cause_names(kinds)[c] for c in cause]


def test_each_cause_and_its_boundaries():
    gt = [(0, LESION)]
    mimics = [(0, DUCT, "duct"), (0, SHADOW, "shadow"), (1, [0, 0, 10, 10], "duct"), (1, [10, 0, 30, 10], "shadow")]
    boxes = {
        "on the lesion": (0, [12, 12, 28, 28]),
        "1 px^2 on the lesion and half on the duct": (0, [29, 29, 60, 60]),
        "touching the lesion's edge": (0, [30, 10, 40, 30]),
        "inside the duct": (0, [55, 55, 65, 65]),
        "half on the shadow, shadow beneath": (0, [0, 60, 20, 100]),
        "just under half on the shadow": (0, [0, 60, 20, 101]),
        "on the duct, in a frame without it": (1, [55, 55, 65, 65]),
        "0.375 on a duct, 0.625 on a shadow": (1, [4, 0, 20, 10]),
        "a large box around the duct": (0, [40, 40, 80, 80]),
    }
    causes = _classify([b for _, b in boxes.values()], [f for f, _ in boxes.values()], gt, mimics)
    assert dict(zip(boxes, causes)) == {
        "on the lesion": "localisation",
        "1 px^2 on the lesion and half on the duct": "localisation",  # the lesion wins
        "touching the lesion's edge": "background",  # IoU 0: no area in common
        "inside the duct": "mimic:duct",
        "half on the shadow, shadow beneath": "mimic:shadow",  # 400 / 800 = 0.5: counts
        "just under half on the shadow": "background",  # 400 / 820
        "on the duct, in a frame without it": "background",
        "0.375 on a duct, 0.625 on a shadow": "mimic:shadow",  # the larger fraction, not the kind's order
        "a large box around the duct": "background",  # 400 / 1600 on the duct
    }


def test_equal_fractions_on_two_kinds_go_to_the_kind_first_in_alphabetical_order():
    for order in ([(0, DUCT, "duct"), (0, DUCT, "shadow")], [(0, DUCT, "shadow"), (0, DUCT, "duct")]):
        assert _classify([[55, 55, 65, 65]], [0], [], order) == ["mimic:duct"]


def _scripted():
    """One video of 10 frames, the lesion in every frame, a duct in every frame, a shadow in
    frames 2-4. The lesion's detections (scores 0.90 ... 0.81) are TPs; every FP scores higher,
    so both operating points keep all FPs (thr80 = 0.83, thr90 = 0.82).

    FP sequences, by hand:
      duct:      on the duct in frames 0-5                          -> mimic:duct
      mixed:     on the shadow in frames 2-6 (3 shadow, 2 after it) -> mimic:shadow (majority)
      tissue:    frames 0-1, far from everything                     -> background
      edge:      half on, half off the lesion's corner, frames 6-7   -> localisation (IoU 0.03)
      tie:       frame 8 overlapping the lesion, frame 9 beside it   -> localisation (1:1 tie)
    """
    gt = make_gt({1: [[LESION] for _ in range(10)]})
    results = [det(1, f, LESION, 0.90 - 0.01 * f) for f in range(10)]
    fps = [(f, [52, 52, 68, 68]) for f in range(6)]
    fps += [(f, SHADOW) for f in range(2, 7)]
    fps += [(f, [70, 0, 90, 20]) for f in range(2)]
    fps += [(f, [25, 25, 45, 45]) for f in (6, 7)]
    fps += [(8, [28, 0, 48, 12]), (9, [31, 0, 51, 12])]
    results += [det(1, f, box, 0.99 - 0.001 * i) for i, (f, box) in enumerate(fps)]
    side = mimic_sidecar.sidecar_dict("trainval", ("duct", "shadow"), [{
        "video_id": 1, "name": "benign/video1", "mimics": [
            {"instance": 2, "kind": "duct", "frames": {str(f): DUCT for f in range(10)}},
            {"instance": 3, "kind": "shadow", "frames": {str(f): SHADOW for f in range(2, 5)}}],
    }])
    return gt, results, mimic_sidecar.parse(side)


def test_scripted_video_by_cause():
    gt, results, mimics = _scripted()
    metrics = evaluate(gt, results).metrics
    assert (metrics["thr80"], metrics["thr90"]) == pytest.approx((0.83, 0.82))
    causes = fp_by_cause(gt, results, metrics, mimics=mimics)
    assert causes.causes == ("localisation", "mimic:duct", "mimic:shadow", "background")
    assert causes.recalls == (0.8, 0.9)
    for row in range(2):
        assert causes.fp_detections[row].tolist() == [3, 6, 3, 5]
        assert causes.fp_sequences[row].tolist() == [2, 1, 1, 1]
        assert causes.fp_per_minute[row].tolist() == pytest.approx([360, 180, 180, 180])  # 10 frames
    assert causes.fp_per_minute.sum(axis=1) == pytest.approx([metrics["FP80"], metrics["FP90"]])


def test_without_a_sidecar_only_localisation_and_background():
    gt, results, _ = _scripted()
    metrics = evaluate(gt, results).metrics
    causes = fp_by_cause(gt, results, metrics)
    assert causes.causes == ("localisation", "background")
    assert causes.fp_detections[0].tolist() == [3, 14]
    assert causes.fp_sequences[0].tolist() == [2, 3]


def _random_case(rng: np.random.Generator):
    """Three videos of random length; a lesion track, mimic boxes and detections around them."""
    videos, results, side_videos = {}, [], []
    for vid in (1, 2, 3):
        n = int(rng.integers(15, 30))
        centre = rng.uniform(20, 80, 2)
        videos[vid] = [[list(np.r_[centre - 8, centre + 8].round(1))] if rng.random() < 0.7 else [] for _ in range(n)]
        mimics = []
        for instance, kind in enumerate(rng.choice(["duct", "shadow"], 3), start=2):
            c = rng.uniform(15, 85, 2)
            start = int(rng.integers(0, n - 3))
            frames = {str(f): list(np.r_[c - 7 + 0.3 * f, c + 7 + 0.3 * f].round(1)) for f in range(start, min(n, start + 12))}
            mimics.append({"instance": int(instance), "kind": str(kind), "frames": frames})
        side_videos.append({"video_id": vid, "name": f"benign/video{vid}", "mimics": mimics})
        anchors = [b for boxes in videos[vid] for b in boxes] + [b for m in mimics for b in m["frames"].values()]
        for f in range(n):
            for _ in range(int(rng.integers(0, 5))):
                if rng.random() < 0.6:  # near a lesion or mimic box of any frame: some overlap it here
                    box = np.array(anchors[int(rng.integers(len(anchors)))]) + rng.normal(0, 4, 4)
                else:
                    x, y = rng.uniform(0, 85, 2)
                    box = np.array([x, y, x + rng.uniform(4, 15), y + rng.uniform(4, 15)])
                box = np.r_[np.minimum(box[:2], box[2:] - 1), np.maximum(box[2:], box[:2] + 1)]
                results.append(det(vid, f, list(box.round(1)), float(rng.uniform())))
    return make_gt(videos), results, mimic_sidecar.parse(mimic_sidecar.sidecar_dict("trainval", ("duct", "shadow"), side_videos))


def _overlap(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _reference_cause(box, frame_gt, frame_mimics):
    """The module docstring's rules as plain loops."""
    if any(_overlap(box, g) > 0 for g in frame_gt):
        return "localisation"
    area = (box[2] - box[0]) * (box[3] - box[1])
    on = sorted((-_overlap(box, m) / area, kind) for m, kind in frame_mimics)  # largest fraction, then kind
    return f"mimic:{on[0][1]}" if on and -on[0][0] >= 0.5 else "background"


def _check_random_case(seed: int) -> set[str]:
    """Assert fp_by_cause against the fold totals and plain loops on one random case; returns
    the causes its FP detections had."""
    gt, results, mimics = _random_case(np.random.default_rng(seed))
    evaluation = evaluate(gt, results)
    causes = fp_by_cause(gt, results, evaluation.metrics, mimics=mimics)
    # Sequences: every cause's FP trees sum to the fold's FP80 / FP90.
    assert causes.fp_per_minute.sum(axis=1) == pytest.approx([evaluation.metrics["FP80"], evaluation.metrics["FP90"]])
    # Detections: the PR curve's FP count at each threshold, each FP with the loops' cause.
    pr = evaluation.curves["pr"]
    num_gt = evaluation.metrics["num_gt_boxes"]
    frame_of = {image_id(v["id"], f): (v["id"], f) for v in gt["videos"] for f in range(1000)}
    gt_of, mimics_of = {}, {}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        gt_of.setdefault(frame_of[a["image_id"]], []).append([x, y, x + w, y + h])
    for v, f, k, b in zip(mimics.video_id, mimics.frame_id, mimics.kind, mimics.boxes):
        mimics_of.setdefault((int(v), int(f)), []).append((b.tolist(), mimics.kinds[k]))
    seen = set()
    for row, thr in enumerate(causes.thresholds):
        kept = int(np.count_nonzero(pr["score"] > thr))
        assert causes.fp_detections[row].sum() == kept - round(pr["recall"][kept - 1] * num_gt)
        # Cause by cause: the kept detections that the greedy IoU-0.5 matching leaves unmatched.
        expected = dict.fromkeys(causes.causes, 0)
        for d in _fp_detections(gt, results, thr):
            x, y, w, h = d["bbox"]
            key = frame_of[d["image_id"]]
            expected[_reference_cause([x, y, x + w, y + h], gt_of.get(key, []), mimics_of.get(key, []))] += 1
        assert causes.fp_detections[row].tolist() == list(expected.values())
        seen |= {c for c, n in expected.items() if n}
    return seen


def test_random_videos_against_plain_loops_and_the_fold_totals():
    seen = set().union(*(_check_random_case(seed) for seed in range(4)))
    assert seen == {"localisation", "mimic:duct", "mimic:shadow", "background"}  # every rule was exercised


def _fp_detections(gt, results, thr):
    """Kept detections (score > thr) that the greedy IoU-0.5 matching leaves unmatched, by loops:
    by score, a detection whose best-IoU GT of its frame has IoU >= 0.5 and is unmatched matches it."""
    boxes = {}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        boxes.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    matched, unmatched = set(), []
    for d in sorted(results, key=lambda d: -d["score"]):
        x, y, w, h = d["bbox"]
        box = [x, y, x + w, y + h]
        ious = [_overlap(box, g) / (w * h + (g[2] - g[0]) * (g[3] - g[1]) - _overlap(box, g)) for g in boxes.get(d["image_id"], [])]
        best = int(np.argmax(ious)) if ious else -1
        if best >= 0 and ious[best] >= 0.5 and (d["image_id"], best) not in matched:
            matched.add((d["image_id"], best))
        else:
            unmatched.append(d)
    return [d for d in unmatched if d["score"] > thr]


def test_a_sidecar_of_another_dataset_is_refused():
    gt, results, mimics = _scripted()
    metrics = evaluate(gt, results).metrics
    renamed = mimic_sidecar.parse(mimic_sidecar.sidecar_dict("trainval", ("duct",), [{"video_id": 1, "name": "benign/other", "mimics": []}]))
    with pytest.raises(EvaluationInputError, match=r"video 1 \('benign/video1'\) is named 'benign/other' in it"):
        fp_by_cause(gt, results, metrics, mimics=renamed)
    missing = mimic_sidecar.parse(mimic_sidecar.sidecar_dict("trainval", ("duct",), []))
    with pytest.raises(EvaluationInputError, match="video 1 .* is missing in it"):
        fp_by_cause(gt, results, metrics, mimics=missing)
    beyond = mimic_sidecar.parse(mimic_sidecar.sidecar_dict("trainval", ("duct",), [
        {"video_id": 1, "name": "benign/video1", "mimics": [{"instance": 2, "kind": "duct", "frames": {"10": DUCT}}]}]))
    with pytest.raises(EvaluationInputError, match="1 frame.* the ground truth lacks, e.g. video 1 frame_id 10"):
        fp_by_cause(gt, results, metrics, mimics=beyond)


def test_csv_rows_and_undefined_operating_points(tmp_path):
    gt, results, mimics = _scripted()
    metrics = evaluate(gt, results).metrics
    path = save_fp_causes(fp_by_cause(gt, results, metrics, mimics=mimics), tmp_path)
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert path.name == "fp_causes.csv" and tuple(rows[0]) == CSV_COLUMNS
    assert [(r["recall"], r["cause"], r["fp_detections"], r["fp_sequences"]) for r in rows[:4]] == [
        ("0.8", "localisation", "3", "2"), ("0.8", "mimic:duct", "6", "1"), ("0.8", "mimic:shadow", "3", "1"), ("0.8", "background", "5", "1"),
    ]
    assert float(rows[4]["threshold"]) == pytest.approx(0.82) and float(rows[0]["fp_per_minute"]) == pytest.approx(360)
    # No detection: no operating point (thr null in metrics.json), the rows are nan.
    empty = fp_by_cause(gt, [], {"thr80": None, "thr90": float("nan")}, mimics=mimics)
    assert np.isnan(empty.fp_detections).all() and np.isnan(empty.fp_per_minute).all()
    with pytest.raises(ValueError, match="lack the operating points' thresholds thr90"):
        fp_by_cause(gt, results, {"thr80": 0.5}, mimics=mimics)
