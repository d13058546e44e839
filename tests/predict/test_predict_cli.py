"""The ``ultradet predict`` command line: installed as a console script, the same as ``python -m
ultradet.predict``; the default threshold is the fold's thr90; every user mistake is one line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import import_module
from pathlib import Path

import pytest
from clipfiles import write_dicom

from ultradet.cli import main as ultradet_main
from ultradet.data import load_videos
from ultradet.predict.cli import run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(make_trained_run):
    return make_trained_run("fasterrcnn", thr90=0.42)  # untrained scores here: 0.34-0.44


@pytest.fixture(scope="module")
def frames(tiny_dataset) -> Path:
    return load_videos(tiny_dataset, "trainval", num_folds=4)[0].frames[0].path.parent


def test_console_script_is_ultradet_cli_main():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = scripts["ultradet"].split(":")
    assert getattr(import_module(module), function) is ultradet_main


def test_default_threshold_is_the_folds_thr90_and_python_m_is_the_same_command(run_dir, frames, tmp_path):
    assert ultradet_main(["predict", str(run_dir), str(frames), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "a" / "predict.json").read_text())
    metrics = run_dir.parents[2] / "results" / "fasterrcnn" / "fold1" / "metrics.json"
    assert (summary["score_thresh"], summary["score_thresh_source"]) == (0.42, str(metrics))
    found = json.loads((tmp_path / "a" / "detections.json").read_text())
    assert found and min(r["score"] for r in found) >= 0.42

    proc = subprocess.run(
        [sys.executable, "-m", "ultradet.predict", str(run_dir), str(frames), "--out", str(tmp_path / "b"), "--no-progress"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    again = json.loads((tmp_path / "b" / "detections.json").read_text())
    # Another process may use another number of threads: equal up to float summation order.
    assert [r["image_id"] for r in again] == [r["image_id"] for r in found]
    assert [r["score"] for r in again] == pytest.approx([r["score"] for r in found], abs=1e-5)
    assert [r["bbox"] for r in again] == [pytest.approx(r["bbox"], abs=2e-3) for r in found]


def _without_weights(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs" / "fasterrcnn" / "fold1"
    shutil.copytree(run_dir, copy)
    (copy / "model_final.pth").unlink()
    return copy


def _without_thr90(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "runs" / "fasterrcnn" / "fold1"
    shutil.copytree(run_dir, copy)  # no results/ beside this runs/
    return copy


@pytest.mark.parametrize(
    "model,clip,message",
    [
        ("run", "missing.mp4", r"missing\.mp4: no such file or folder"),
        ("run", "no-pixels", r"loop\.dcm: this DICOM file has no pixel data"),
        ("without-weights", "frames", r"fold1: not a trained run folder: model_final\.pth \(trained weights"),
        ("runs/nothing/fold0", "frames", r"runs/nothing/fold0: no such run folder .* and not an MLflow model URI"),
        ("without-thr90", "frames", r"no default score threshold for .*results/fasterrcnn/fold1/metrics\.json.*pass --score-thresh"),
    ],
    ids=["missing-clip", "dicom-without-pixels", "run-without-weights", "no-such-model", "no-thr90"],
)
def test_user_mistakes_are_one_line_on_stderr(run_dir, frames, tmp_path, capsys, model, clip, message):
    models = {"run": run_dir, "without-weights": _without_weights, "without-thr90": _without_thr90}
    chosen = models.get(model, model)
    model_arg = str(chosen(run_dir, tmp_path) if callable(chosen) else chosen)
    clips = {"frames": frames, "no-pixels": write_dicom(None, tmp_path / "loop.dcm", "MONOCHROME2")}
    clip_arg = str(clips.get(clip, tmp_path / clip))
    assert run([model_arg, clip_arg, "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ultradet predict: ")
    assert re.search(message, err), err
