"""``python -m ultradet.evaluation`` end to end on a small JSON pair."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from evaltoy import det, make_gt

from ultradet import mimic_sidecar
from ultradet.evaluation.__main__ import main

A = [0, 0, 10, 10]
# Spec section 1 test vectors: these patient ids fall in folds 0 and 2 of 4.
FOLD0, FOLD2 = "2cda21c3aab26332", "1dc9ca2f1748c2ec"


def write_pair(tmp_path: Path) -> tuple[Path, Path]:
    gt = make_gt({1: [[A], [A], []], 2: [[A], []]})
    gt["videos"][0]["name"] = f"benign/{FOLD0}"
    gt["videos"][1]["name"] = f"malignant/{FOLD2}"
    results = [det(1, 0, A, 0.9), det(1, 1, A, 0.8), det(1, 2, [50, 50, 60, 60], 0.4), det(2, 0, A, 0.7)]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(results))
    return tmp_path / "gt.json", tmp_path / "pred.json"


def test_cli_subprocess_writes_metrics_and_prints_a_table(tmp_path):
    gt, pred = write_pair(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "ultradet.evaluation", "--gt", str(gt), "--pred", str(pred), "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert "AP50 (%)" in proc.stdout and "FP80 (/min)" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["AP50"] == 1.0 and metrics["num_videos"] == 2 and metrics["num_frames"] == 5
    assert (out / "pr_curve.csv").is_file() and (out / "fp_curve.csv").is_file()
    causes = (out / "fp_causes.csv").read_text().splitlines()
    assert [line.split(",")[2] for line in causes[1:]] == ["localisation", "background"] * 2  # no sidecar


def test_cli_finds_the_mimic_sidecar_beside_the_ground_truth(tmp_path):
    gt, pred = write_pair(tmp_path)
    sidecar = mimic_sidecar.sidecar_dict("gt", ("duct",), [
        {"video_id": 1, "name": f"benign/{FOLD0}", "mimics": [{"instance": 2, "kind": "duct", "frames": {"2": [50, 50, 60, 60]}}]},
        {"video_id": 2, "name": f"malignant/{FOLD2}", "mimics": []},
    ])
    (tmp_path / "gt_mimics.json").write_text(mimic_sidecar.dumps(sidecar))
    # A confident FP on the duct (video 1, frame 2), one beside it.
    results = json.loads(pred.read_text()) + [det(1, 2, [50, 50, 60, 60], 0.95), det(1, 2, [70, 70, 80, 80], 0.94)]
    pred.write_text(json.dumps(results))
    assert main(["--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "o")]) == 0
    rows = [line.split(",") for line in (tmp_path / "o" / "fp_causes.csv").read_text().splitlines()[1:]]
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("0.8", "localisation", "0", "0"), ("0.8", "mimic:duct", "1", "1"), ("0.8", "background", "1", "1"),
        ("0.9", "localisation", "0", "0"), ("0.9", "mimic:duct", "1", "1"), ("0.9", "background", "1", "1"),
    ]


def test_cli_restricts_to_patient_folds(tmp_path, capsys):
    gt, pred = write_pair(tmp_path)
    assert main(["--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "f0"), "--folds", "0", "--num-folds", "4"]) == 0
    metrics = json.loads((tmp_path / "f0" / "metrics.json").read_text())
    assert (metrics["num_videos"], metrics["num_frames"], metrics["num_detections"]) == (1, 3, 3)
    assert "num_frames" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no video"):
        main(["--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "f1"), "--folds", "1"])


def _run_cli(tmp_path: Path, gt: Path, pred: Path, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "ultradet.evaluation", "--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=60, env={**os.environ, **env},
    )


def test_cli_bad_input_is_one_line_without_traceback(tmp_path):
    gt, pred = write_pair(tmp_path)
    results = json.loads(pred.read_text())
    results[2]["bbox"] = [50, 50, -10, 10]
    pred.write_text(json.dumps(results))
    proc = _run_cli(tmp_path, gt, pred)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "ultradet.evaluation: results[2] (image_id 1002: video benign/2cda21c3aab26332 frame 2): "
        "bbox [50, 50, -10, 10] has negative width or height (1 such results entries); "
        "COCO boxes are [x, y, w, h] with w, h >= 0"
    ]
    debug = _run_cli(tmp_path, gt, pred, ULTRADET_DEBUG="1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "EvaluationInputError" in debug.stderr


def test_cli_refuses_a_ground_truth_box_outside_its_image(tmp_path):
    # The prepare stage refuses this dataset; the evaluation used to score it.
    gt, pred = write_pair(tmp_path)
    data = json.loads(gt.read_text())
    data["annotations"][0]["bbox"] = [400, 400, 10, 10]
    gt.write_text(json.dumps(data))
    proc = _run_cli(tmp_path, gt, pred)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "ultradet.evaluation: annotations[0] (image_id 1000: video benign/2cda21c3aab26332 frame 0): "
        "box [400, 400, 10, 10] (xywh) lies outside the 100x100 frame (1 such annotations); "
        "the prepare stage refuses such a dataset"
    ]
    assert not (tmp_path / "o").exists()
