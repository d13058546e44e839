"""The report's "False positives by cause" section from fake fold files: the fold means, the
sum column, the claim model's mimic sentence, summary.json, the plot, data without mimics, and
models evaluated before fp_causes.csv existed."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from test_report import write_fold

from ultradet.evaluation.fp_causes import CSV_COLUMNS
from ultradet.report import ModelSpec, model_specs, write_report
from ultradet.report.fp_causes import mimic_sentence, summarize_fp_causes

FOLDS = [0, 1, 2]
MODELS = {"frcnn": ("FasterRCNN", "Image"), "ultra": ("UltraDet", "Video"), "basic": ("BasicDet", "Video")}
MIMIC_CAUSES = ("localisation", "mimic:duct", "mimic:shadow", "background")


def write_causes(folder: Path, rng: np.random.Generator, causes=MIMIC_CAUSES, scale: float = 1.0) -> pd.DataFrame:
    """A fold's fp_causes.csv with random counts; the rates are counts / 360 frames * 1800."""
    rows = []
    for recall, thr in ((0.8, 0.6), (0.9, 0.4)):
        for cause in causes:
            detections = int(rng.integers(0, 40))
            sequences = int(rng.integers(0, 8) * scale)
            rows.append((recall, thr, cause, detections, sequences, sequences / 360 * 1800))
    frame = pd.DataFrame(rows, columns=CSV_COLUMNS)
    frame.to_csv(folder / "fp_causes.csv", index=False)
    return frame


def _project(root: Path) -> Path:
    (root / "experiments").mkdir()
    for name, (display, kind) in MODELS.items():
        (root / "experiments" / f"{name}.yaml").write_text(
            f"name: {name}\ndisplay_name: {display}\ngroup: Faster R-CNN-based\ntype: {kind}\n")
    rng = np.random.default_rng(0)
    for name in MODELS:
        for k in FOLDS:
            write_fold(root, name, k, rng)
    return root


@pytest.fixture()
def project(tmp_path) -> Path:
    return _project(tmp_path)


def _write_all(root: Path, causes=MIMIC_CAUSES, scales=None) -> dict[str, list[pd.DataFrame]]:
    rng = np.random.default_rng(1)
    return {m: [write_causes(root / "results" / m / f"fold{k}", rng, causes, (scales or {}).get(m, 1.0)) for k in FOLDS] for m in MODELS}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, dict]:
    """The report of the three models with mimic-cause files: (written files, the folds' frames)."""
    root = _project(tmp_path_factory.mktemp("fp_causes"))
    files = _write_all(root)
    return _report(root), files


def _report(root: Path, out: str = "reports") -> dict:
    specs = model_specs(list(MODELS), root / "experiments")
    return write_report(specs, FOLDS, results_dir=root / "results", runs_dir=root / "runs", out_dir=root / out,
                        claim=("ultra", ["basic", "frcnn"]))


def _rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the table under ``heading`` (a line ending with ':') of the FP-by-cause section."""
    section = markdown.split("## False positives by cause")[1].split("\n## ")[0]
    table = section.split(heading)[1].split("\n\n")[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_table_holds_the_fold_means_and_their_sum(report):
    written, files = report
    text = written["paper_table.md"].read_text()
    assert text.index("## False positives by cause") < text.index("## Measured beside published")
    header = text.split("FP sequences per minute:\n\n")[1].splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")] == ["Model", "Recall", "Localisation", "Mimic: duct", "Mimic: shadow", "Background", "All"]
    for heading, value in (("FP sequences per minute:", "fp_per_minute"), ("FP detections per fold:", "fp_detections")):
        rows = _rows(text, heading)
        assert [r[:2] for r in rows] == [[d, r] for d in ("FasterRCNN", "UltraDet", "BasicDet") for r in ("0.8", "0.9")]
        for row in rows:
            model = next(m for m, (d, _) in MODELS.items() if d == row[0])
            folds = pd.concat(files[model])
            at = folds[folds.recall == float(row[1])]
            means = [at[at.cause == c][value].mean() for c in MIMIC_CAUSES]
            assert row[2:] == [f"{m:.1f}" for m in means] + [f"{sum(means):.1f}"]


def _sentence(scale) -> str:
    """The claim model's sentence over fake fold means: each mimic cause's rate uniform in
    [1, 10) per fold, times ``scale(model, recall)``."""
    rng = np.random.default_rng(2)
    rows = [
        (model, k, recall, cause, 5, rng.uniform(1, 10) * scale(model, recall))
        for model in MODELS for k in FOLDS for recall in (0.8, 0.9) for cause in MIMIC_CAUSES
    ]
    frame = pd.DataFrame(rows, columns=["model", "fold", "recall", "cause", "fp_detections", "fp_per_minute"])
    specs = [ModelSpec(m, d, "Faster R-CNN-based", t) for m, (d, t) in MODELS.items()]
    return mimic_sentence(summarize_fp_causes(frame, specs), "ultra", {m: d for m, (d, _) in MODELS.items()})


def test_mimic_sentence_says_whether_the_claim_model_has_fewer():
    assert _sentence(lambda m, r: 0.1 if m == "ultra" else 1.0).startswith(
        "UltraDet has fewer mimic-caused FP sequences per minute than each other model at both operating points "
        "(fold means, no test; recall 0.8: UltraDet ")
    assert _sentence(lambda m, r: 10.0 if m == "ultra" else 1.0).startswith(
        "UltraDet does not have fewer mimic-caused FP sequences per minute than each other model at either operating point")
    # FasterRCNN has no mimic FP at recall 0.8: UltraDet is fewer than each other model only at 0.9.
    only = _sentence(lambda m, r: {"ultra": 0.1, "frcnn": 0.0 if r == 0.8 else 1.0}.get(m, 1.0))
    assert only.startswith("UltraDet has fewer mimic-caused FP sequences per minute than each other model only at recall 0.9 (")
    assert "recall 0.8: UltraDet " in only and "FasterRCNN 0.0" in only


def test_mimic_sentence_numbers_are_the_sums_of_the_mimic_columns(report):
    written, files = report
    entry = json.loads(written["summary.json"].read_text())["fp_causes"]
    assert f"**{entry['sentence']}**" in written["paper_table.md"].read_text()
    assert entry["recalls"] == [0.8, 0.9] and entry["causes"] == list(MIMIC_CAUSES) and entry["claim_model"] == "ultra"
    for model, (display, _) in MODELS.items():
        folds = pd.concat(files[model])
        for recall in (0.8, 0.9):
            at = folds[folds.recall == recall]
            mimic = sum(at[at.cause == c].fp_per_minute.mean() for c in ("mimic:duct", "mimic:shadow"))
            assert f"{display} {mimic:.1f}" in entry["sentence"].split(f"recall {recall:g}: ")[1]
            cell = entry["models"][model][f"{recall:g}"]["mimic:shadow"]
            assert cell["fp_per_minute"] == pytest.approx(at[at.cause == "mimic:shadow"].fp_per_minute.mean()) and cell["n"] == 3


def test_plot_is_a_nonempty_png(report):
    written, _ = report
    image = matplotlib.image.imread(written["plots/fp_causes.png"])
    assert image.ndim == 3 and image.shape[0] > 300 and image[..., :3].std() > 0.05


def test_data_without_mimics_give_localisation_and_background_only(project):
    _write_all(project, causes=("localisation", "background"))
    text = _report(project)["paper_table.md"].read_text()
    header = text.split("FP sequences per minute:\n\n")[1].splitlines()[0]
    assert [c.strip() for c in header.strip("|").split("|")] == ["Model", "Recall", "Localisation", "Background", "All"]
    assert "The data record no lesion mimics (no mimic sidecar, as on CVA-BUS)" in text


def test_models_without_the_file_are_left_out_with_a_warning(project):
    _write_all(project)
    (project / "results" / "basic" / "fold1" / "fp_causes.csv").unlink()
    with pytest.warns(UserWarning, match=r"without fp_causes.csv: .*basic/fold1/fp_causes.csv"):
        text = _report(project)["paper_table.md"].read_text()
    rows = _rows(text, "FP sequences per minute:")
    assert {r[0] for r in rows} == {"FasterRCNN", "UltraDet"}
    for name in ("frcnn", "ultra", "basic"):
        for k in FOLDS:
            (project / "results" / name / f"fold{k}" / "fp_causes.csv").unlink(missing_ok=True)
    with pytest.warns(UserWarning, match="without fp_causes.csv"):
        written = _report(project, "none")
    assert "False positives by cause" not in written["paper_table.md"].read_text()
    assert "plots/fp_causes.png" not in written and "fp_causes" not in json.loads(written["summary.json"].read_text())
