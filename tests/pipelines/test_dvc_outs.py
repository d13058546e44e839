"""The evaluate stage of dvc.yaml declares every file the evaluation writes into
results/<model>/fold<k>/, so DVC tracks it and the report (a pure function of DVC outputs) may
read it (found statically and on a tiny evaluation: no stage is run)."""

from __future__ import annotations

from pathlib import Path

import yaml

from ultradet.evaluation import evaluate, save_metrics

REPO = Path(__file__).resolve().parents[2]
EVALUATE = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["evaluate"]
FOLD_DIR = "results/${item.model}/fold${item.fold}/"


def _declared(stage: dict) -> set[str]:
    """Paths of a stage's outs, metrics and plots (an entry is a path or ``{path: options}``)."""
    entries = [e for key in ("outs", "metrics", "plots") for e in stage.get(key, [])]
    return {e if isinstance(e, str) else next(iter(e)) for e in entries}


def test_evaluate_declares_every_file_save_metrics_writes(tmp_path):
    gt = {"videos": [{"id": 1, "name": "benign/a"}], "annotations": [],
          "images": [{"id": 1, "video_id": 1, "frame_id": 0, "width": 10, "height": 10}]}
    written = save_metrics(evaluate(gt, [{"image_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]), tmp_path)
    assert "per_video" in written
    undeclared = {p.name for p in written.values()} - {p.removeprefix(FOLD_DIR) for p in _declared(EVALUATE)}
    assert not undeclared, f"dvc.yaml's evaluate stage does not declare {sorted(undeclared)}"


def test_per_video_csv_is_an_uncached_out_of_evaluate():
    entry = next(e for e in EVALUATE["outs"] if isinstance(e, dict) and FOLD_DIR + "per_video.csv" in e)
    assert entry[FOLD_DIR + "per_video.csv"] == {"cache": False}


def test_temporal_ablation_is_an_uncached_out_of_evaluate(tmp_path):
    """The file the evaluate stage writes for the temporal ablation (the report reads it)."""
    from ultradet.evaluation import save_temporal_ablation

    name = save_temporal_ablation(tmp_path).name
    entry = next(e for e in EVALUATE["outs"] if isinstance(e, dict) and FOLD_DIR + name in e)
    assert entry[FOLD_DIR + name] == {"cache": False}
