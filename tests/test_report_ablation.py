"""The report's "Temporal ablation" section from fake fold files: with, without and their paired
difference against numbers computed here, folds without an operating point, single-frame models,
summary.json, and results evaluated before temporal_ablation.json existed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import write_fold

from ultradet.evaluation import save_temporal_ablation
from ultradet.report import ReportInputError, model_specs, write_report

FOLDS = [0, 1, 2]
MODELS = {"frcnn": ("FasterRCNN", "Image"), "basic": ("BasicDet", "Video"), "ultra": ("UltraDet", "Video")}
KEYS = ("AP50", "Pr80", "FP80", "R16")
ABLATED_MAX_RECALL = {("ultra", 1): 0.75}  # this ablated run never reaches recall 0.8


def _project(root: Path) -> Path:
    (root / "experiments").mkdir()
    for name, (display, kind) in MODELS.items():
        (root / "experiments" / f"{name}.yaml").write_text(
            f"name: {name}\ndisplay_name: {display}\ngroup: Faster R-CNN-based\ntype: {kind}\n")
    rng = np.random.default_rng(0)
    for name in MODELS:
        for k in FOLDS:
            write_fold(root, name, k, rng)
            # The default runs all reach recall 0.95.
            pd.DataFrame({"recall": [0.5, 0.95], "precision": [0.9, 0.5], "score": [0.9, 0.1]}).to_csv(
                root / "results" / name / f"fold{k}" / "pr_curve.csv", index=False)
    return root


def _write_ablation(root: Path, model: str, fold: int, rng: np.random.Generator) -> dict:
    folder = root / "results" / model / f"fold{fold}"
    if MODELS[model][1] == "Image":
        save_temporal_ablation(folder)
        return {}
    metrics = {k: float(rng.uniform(1, 30)) if k.startswith("FP") else float(rng.uniform(0.5, 0.99)) for k in KEYS}
    change = {"frames": 100 + fold, "top_changed": float(rng.uniform(0, 0.2)), "top_score_change": float(rng.uniform(0, 0.1))}
    save_temporal_ablation(folder, metrics, change, ABLATED_MAX_RECALL.get((model, fold), 0.9))
    return {**metrics, **change}


def _report(root: Path, out: str = "reports") -> dict:
    specs = model_specs(list(MODELS), root / "experiments")
    return write_report(specs, FOLDS, results_dir=root / "results", runs_dir=root / "runs", out_dir=root / out)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = _project(tmp_path_factory.mktemp("ablation"))
    rng = np.random.default_rng(1)
    ablated = {(m, k): _write_ablation(root, m, k, rng) for m in MODELS for k in FOLDS}
    return root, ablated, _report(root)


def _section(markdown: str) -> str:
    return markdown.split("## Temporal ablation")[1].split("\n## ")[0]


def _rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()[2:]]


def _tables(markdown: str) -> tuple[list[list[str]], list[list[str]]]:
    blocks = [b for b in _section(markdown).split("\n\n") if b.startswith("| Model")]
    return _rows(blocks[0]), _rows(blocks[1])


def _default(root: Path, model: str, fold: int) -> dict:
    return json.loads((root / "results" / model / f"fold{fold}" / "metrics.json").read_text())


def test_with_without_and_difference_are_paired_fold_means(report):
    root, ablated, written = report
    metrics_rows, _ = _tables(written["paper_table.md"].read_text())
    cells = {(r[0], r[1]): r[2:] for r in metrics_rows}
    summary = json.loads(written["summary.json"].read_text())["temporal_ablation"]["models"]
    for model, name in (("basic", "BasicDet"), ("ultra", "UltraDet")):
        for key, label in zip(KEYS, ("AP50", "Pr80", "FP80", "R@16")):
            folds = [k for k in FOLDS if not (key in ("Pr80", "FP80") and (model, k) in ABLATED_MAX_RECALL)]
            scale = 1 if key == "FP80" else 100
            on = np.array([_default(root, model, k)[key] for k in folds]) * scale
            off = np.array([ablated[(model, k)][key] for k in folds]) * scale
            diff = on - off
            entry = summary[model][key]
            assert entry["with"] == pytest.approx(on.mean()) and entry["without"] == pytest.approx(off.mean())
            assert entry["difference"] == pytest.approx(diff.mean()) and entry["n"] == len(folds)
            assert entry["difference_sd"] == pytest.approx(diff.std(ddof=1))
            assert cells[(name, label)] == [f"{on.mean():.1f}", f"{off.mean():.1f}", f"{diff.mean():+.1f} ± {diff.std(ddof=1):.1f}", str(len(folds))]


def test_change_of_the_top_detections(report):
    _, ablated, written = report
    _, change_rows = _tables(written["paper_table.md"].read_text())
    assert [r[0] for r in change_rows] == ["BasicDet", "UltraDet"]
    for row, model in zip(change_rows, ("basic", "ultra")):
        changed = np.mean([ablated[(model, k)]["top_changed"] for k in FOLDS]) * 100
        score = np.mean([ablated[(model, k)]["top_score_change"] for k in FOLDS])
        assert row[1:] == ["101", f"{changed:.1f}", f"{score:.3f}", "3"]


def test_single_frame_models_have_no_row(report):
    _, _, written = report
    section = _section(written["paper_table.md"].read_text())
    assert "FasterRCNN" not in section
    assert set(json.loads(written["summary.json"].read_text())["temporal_ablation"]["models"]) == {"basic", "ultra"}


def test_results_without_ablation_files(tmp_path):
    root = _project(tmp_path)
    rng = np.random.default_rng(2)
    for k in FOLDS:
        _write_ablation(root, "basic", k, rng)
    _write_ablation(root, "ultra", 0, rng)  # folds 1 and 2 evaluated before the file existed
    with pytest.warns(UserWarning, match="temporal_ablation.json"):
        written = _report(root)
    metrics_rows, _ = _tables(written["paper_table.md"].read_text())
    assert {r[0] for r in metrics_rows} == {"BasicDet"}
    for k in FOLDS:
        (root / "results" / "basic" / f"fold{k}" / "temporal_ablation.json").unlink()
    (root / "results" / "ultra" / "fold0" / "temporal_ablation.json").unlink()
    with pytest.warns(UserWarning):
        written = _report(root, "reports2")
    assert "Temporal ablation" not in written["paper_table.md"].read_text()
    assert "temporal_ablation" not in json.loads(written["summary.json"].read_text())


def test_a_file_without_its_metrics_is_named(tmp_path):
    root = _project(tmp_path)
    rng = np.random.default_rng(3)
    for m in MODELS:
        for k in FOLDS:
            _write_ablation(root, m, k, rng)
    path = root / "results" / "basic" / "fold2" / "temporal_ablation.json"
    content = json.loads(path.read_text())
    del content["metrics"]["FP80"]
    path.write_text(json.dumps(content))
    with pytest.raises(ReportInputError, match=r"fold2.*metrics\.FP80"):
        _report(root)
