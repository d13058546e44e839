"""The report's claim check: paired differences over folds, t intervals, verdicts, the sentence,
and where it lands (paper_table.md, summary.json)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from test_report import fake_metrics, load_report_stage  # the same fakes as the report tests
from ultradet.config import dump_config, load_config
from ultradet.report import model_specs, write_report
from ultradet.report.claim import PairedComparison, check_claim, claim_baselines, claim_sentence, measured_only, paired_comparison
from ultradet.report.claim_section import decide
from ultradet.report.patients import PatientComparison, patient_sentence
from ultradet.report.power import mdd_factor


def test_paired_t_interval_by_hand():
    # d = [-2, -4, -3, -5]: mean -3.5, sample sd sqrt(5/3), t(0.975, 3) = 3.182446
    n, mean, low, high, verdict = paired_comparison(np.array([8.0, 6, 7, 5]), np.array([10.0, 10, 10, 10]), higher_is_better=False)
    half = 3.182446 * math.sqrt(5 / 3) / 2
    assert (n, verdict) == (4, "better")
    assert mean == pytest.approx(-3.5) and low == pytest.approx(-3.5 - half, abs=1e-5) and high == pytest.approx(-3.5 + half, abs=1e-5)


def test_interval_matches_scipy_paired_t_test():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.8, 0.05, 5), rng.normal(0.75, 0.05, 5)
    _, _, low, high, _ = paired_comparison(a, b, higher_is_better=True)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high))


@pytest.mark.parametrize(
    "model, baseline, higher, verdict",
    [
        ([0.9, 0.92, 0.91], [0.8, 0.81, 0.79], True, "better"),
        ([0.7, 0.72, 0.71], [0.8, 0.81, 0.79], True, "worse"),
        ([0.9, 0.7, 0.85], [0.8, 0.81, 0.79], True, "inconclusive"),
        ([1.0, 2.0, 1.5], [5.0, 6.0, 5.5], False, "better"),  # fewer FP
        ([1.0, math.nan, math.nan], [5.0, 6.0, 5.5], False, "undefined"),  # one usable fold
    ],
)
def test_verdicts(model, baseline, higher, verdict):
    assert paired_comparison(np.array(model), np.array(baseline), higher_is_better=higher)[-1] == verdict


def _long(values: dict) -> pd.DataFrame:
    """{(model, metric): [per fold]} -> the long frame of load_fold_metrics."""
    rows = [(m, k, metric, v) for (m, metric), vs in values.items() for k, v in enumerate(vs)]
    return pd.DataFrame(rows, columns=["model", "fold", "metric", "value"])


def test_sentence_follows_the_numbers():
    good = {("u", "FP80"): [1, 2, 1, 2], ("u", "FP90"): [3, 4, 3, 4], ("u", "Pr80"): [0.9, 0.91, 0.92, 0.9],
            ("u", "Pr90"): [0.8, 0.82, 0.81, 0.8]}
    base = {("b", "FP80"): [5, 6, 5, 7], ("b", "FP90"): [9, 9, 8, 9], ("b", "Pr80"): [0.8, 0.8, 0.81, 0.79],
            ("b", "Pr90"): [0.6, 0.62, 0.61, 0.6]}
    names = {"u": "UltraDet", "b": "Base"}
    comparisons = check_claim(_long({**good, **base}), "u", ["b"])
    assert [c.verdict for c in comparisons] == ["better"] * 4
    sentence = claim_sentence(comparisons, "UltraDet", names)
    assert sentence.startswith("The claim holds here") and "FP90 vs Base -5.2/min" in sentence
    swapped = check_claim(_long({**{("b", k[1]): v for k, v in good.items()}, **{("u", k[1]): v for k, v in base.items()}}), "u", ["b"])
    assert claim_sentence(swapped, "UltraDet", names).startswith("The claim does not hold here")


def test_folds_that_never_reach_a_recall_level_are_left_out_of_its_comparisons():
    values = {("u", "FP80"): [1, 2, 3], ("b", "FP80"): [4, 6, 9], ("u", "FP90"): [2, 3, 50], ("b", "FP90"): [5, 7, 8],
              **{(m, pr): [0.5, 0.5, 0.5] for m in "ub" for pr in ("Pr80", "Pr90")}}
    # fold 2: u's PR curve stops at recall 0.85, so its FP90 (50) is the fallback, not a measurement
    max_recall = {("u", 0): 0.95, ("u", 1): 0.93, ("u", 2): 0.85, ("b", 0): 0.9, ("b", 1): 0.96, ("b", 2): 0.97}
    fp80, fp90 = check_claim(measured_only(_long(values), max_recall), "u", ["b"])[:2]
    assert (fp80.n, fp80.mean_diff) == (3, pytest.approx(-13 / 3))  # every fold reaches 0.8
    assert (fp90.n, fp90.mean_diff) == (2, pytest.approx(-3.5))  # folds 0-1: -3, -4
    assert fp90.verdict == check_claim(_long(values), "u", ["b"])[1].verdict == "inconclusive"
    assert check_claim(_long(values), "u", ["b"])[1].n == 3  # without the mask the fallback counts


def test_baselines_default_to_every_other_model_and_an_explicit_list_is_kept():
    models = ["fasterrcnn", "fgfa", "basicdet", "ultradet"]
    assert claim_baselines("ultradet", None, models) == ["fasterrcnn", "fgfa", "basicdet"]
    assert claim_baselines("ultradet", [], models) == ["fasterrcnn", "fgfa", "basicdet"]
    assert claim_baselines("ultradet", ["basicdet", "selsa", "fasterrcnn"], models) == ["basicdet", "fasterrcnn"]


def test_fold_comparisons_carry_the_minimum_detectable_difference():
    values = {("u", "FP80"): [1, 2, 4], ("b", "FP80"): [5, 5, 5], **{(m, k): [0.5] * 3 for m in "ub" for k in ("FP90", "Pr80", "Pr90")}}
    fp80 = check_claim(_long(values), "u", ["b"])[0]
    assert fp80.mdd == pytest.approx(mdd_factor() * np.std([-4, -3, -1], ddof=1) / math.sqrt(3))


@pytest.mark.filterwarnings("ignore:no patient-level claim check")  # these fakes have no per_video.csv
def test_report_carries_the_claim_check(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "experiments").mkdir()
    for name, display, kind in (("ultradet", "UltraDet", "Video"), ("fasterrcnn", "FasterRCNN", "Image")):
        (tmp_path / "experiments" / f"{name}.yaml").write_text(
            f"name: {name}\ndisplay_name: {display}\ngroup: Faster R-CNN-based\ntype: {kind}\n")
        for fold in range(3):
            out = tmp_path / "results" / name / f"fold{fold}"
            out.mkdir(parents=True)
            (out / "metrics.json").write_text(json.dumps(fake_metrics(rng)))
            pd.DataFrame({"recall": [0.1, 0.95], "precision": [1.0, 0.5]}).to_csv(out / "pr_curve.csv", index=False)
            pd.DataFrame({"recall": [0.1, 0.5], "fp_per_minute": [1.0, 5.0]}).to_csv(out / "fp_curve.csv", index=False)
    specs = model_specs(["fasterrcnn", "ultradet"], tmp_path / "experiments")
    written = write_report(specs, [0, 1, 2], results_dir=tmp_path / "results", runs_dir=tmp_path / "runs",
                           out_dir=tmp_path / "reports", claim=("ultradet", ["basicdet", "fasterrcnn"]))
    summary = json.loads(written["summary.json"].read_text())["claim_check"]
    assert summary["baselines"] == ["fasterrcnn"]  # basicdet is not in the report
    assert len(summary["comparisons"]) == 4
    assert [c["n"] for c in summary["comparisons"]] == [3] * 4  # every fold reaches recall 0.95
    table = written["paper_table.md"].read_text()
    assert "## Claim check" in table and summary["sentence"] in table
    assert table.index("## Claim check") < table.index("## Published")


MODELS3 = (("fasterrcnn", "FasterRCNN", "Image"), ("basicdet", "BasicDet", "Video"), ("ultradet", "UltraDet", "Video"))
FP_SHIFT = {"fasterrcnn": 0.0, "basicdet": 0.0, "ultradet": -6.0}  # UltraDet: 6 fewer FP sequences per minute


def per_video_rows(model: str, fold: int, rng: np.random.Generator) -> pd.DataFrame:
    """Four patients per fold; patient a has two videos. FP sequences per video drawn around 10 per
    minute (lower for UltraDet), recall around 0.8."""
    videos = [(f"f{fold}a", 2.0), (f"f{fold}a", 1.0), (f"f{fold}b", 1.5), (f"f{fold}c", 0.5), (f"f{fold}d", 1.0)]
    minutes = np.array([m for _, m in videos])
    rate = np.clip(10 + FP_SHIFT[model] + rng.normal(0, 2, len(videos)), 0, None)
    gt = rng.integers(500, 1000, len(videos))
    rows = {"video_id": 10 * fold + np.arange(len(videos)), "patient_id": [p for p, _ in videos],
            "num_frames": (minutes * 1800).astype(int), "minutes": minutes, "num_gt_boxes": gt}
    for r, p in ((0.8, "80"), (0.9, "90")):
        seq = np.round(rate * minutes * (1 + (r == 0.9)))
        tp = np.round(gt * np.clip(r + rng.normal(0, 0.05, len(videos)), 0, 1))
        rows.update({f"thr{p}": 0.5, f"fp_sequences{p}": seq, f"FP{p}": seq / minutes, f"fp_detections{p}": 2 * seq,
                     f"tp{p}": tp, f"recall{p}": tp / gt})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def three_models(tmp_path_factory):
    """Fake results of three models on folds 0-2: metrics.json, curves and per_video.csv."""
    root, rng = tmp_path_factory.mktemp("claim3"), np.random.default_rng(5)
    (root / "experiments").mkdir()
    for name, display, kind in MODELS3:
        (root / "experiments" / f"{name}.yaml").write_text(
            f"name: {name}\ndisplay_name: {display}\ngroup: Faster R-CNN-based\ntype: {kind}\n")
        for fold in range(3):
            out = root / "results" / name / f"fold{fold}"
            out.mkdir(parents=True)
            (out / "metrics.json").write_text(json.dumps(fake_metrics(rng)))
            pd.DataFrame({"recall": [0.1, 0.95], "precision": [1.0, 0.5]}).to_csv(out / "pr_curve.csv", index=False)
            pd.DataFrame({"recall": [0.1, 0.5], "fp_per_minute": [1.0, 5.0]}).to_csv(out / "fp_curve.csv", index=False)
            per_video_rows(name, fold, rng).to_csv(out / "per_video.csv", index=False)
            runs = root / "runs" / name / f"fold{fold}"
            runs.mkdir(parents=True)
            dump_config(load_config(root / "experiments" / f"{name}.yaml"), runs / "config.yaml")
    return root


def _report(root, out, claim):
    specs = model_specs([m for m, _, _ in MODELS3], root / "experiments")
    return write_report(specs, [0, 1, 2], results_dir=root / "results", runs_dir=root / "runs", out_dir=out, claim=claim)


def _patient_fp80(root, model: str, baseline: str) -> dict[str, float]:
    """{patient: FP80 difference}, pooled by patient with plain loops over the files."""
    pooled = {}
    for name in (model, baseline):
        for fold in range(3):
            for row in pd.read_csv(root / "results" / name / f"fold{fold}" / "per_video.csv").itertuples():
                seq, minutes = pooled.get((name, row.patient_id), (0.0, 0.0))
                pooled[(name, row.patient_id)] = (seq + row.fp_sequences80, minutes + row.minutes)
    patients = {p for _, p in pooled}
    return {p: pooled[(model, p)][0] / pooled[(model, p)][1] - pooled[(baseline, p)][0] / pooled[(baseline, p)][1] for p in patients}


@pytest.mark.filterwarnings("ignore:no loss curve")
def test_report_compares_over_patients_against_every_other_model_and_says_which_level_decides(three_models, tmp_path):
    written = _report(three_models, tmp_path, ("ultradet", None))
    check = json.loads(written["summary.json"].read_text())["claim_check"]
    assert check["baselines"] == ["fasterrcnn", "basicdet"]
    patients = check["patient_level"]["comparisons"]
    assert [(c["baseline"], c["metric"]) for c in patients] == [
        (b, m) for b in ("fasterrcnn", "basicdet") for m in ("FP80", "FP90", "recall80", "recall90")]
    fp80 = patients[0]
    diff = _patient_fp80(three_models, "ultradet", "fasterrcnn")
    assert fp80["n"] == len(diff) == 12  # 4 patients x 3 folds (the 15 videos pooled into patients)
    assert fp80["mean_diff"] == pytest.approx(np.mean(list(diff.values())))
    assert fp80["better"] == sum(d < 0 for d in diff.values()) and fp80["verdict"] == "better"
    assert fp80["ci_low"] < fp80["mean_diff"] < fp80["ci_high"] < 0
    assert check["decides"] == "patient"
    assert check["decision"].startswith("The patient level decides: it pairs n=12 patients against n=3 folds")
    assert all(c["mdd"] is not None for c in check["comparisons"])
    table = written["paper_table.md"].read_text()
    for text in ("**Over folds**", "**Over patients.**", check["sentence"], check["patient_level"]["sentence"], check["decision"]):
        assert text in table
    assert table.index("**Over folds**") < table.index("**Over patients.**") < table.index(check["decision"])
    assert "| BasicDet   | FP80     |           12 |" in table


@pytest.mark.filterwarnings("ignore:no loss curve", "ignore:no patient-level claim check")
def test_without_per_video_files_the_fold_level_decides(three_models, tmp_path):
    results = tmp_path / "results"
    for path in (three_models / "results").rglob("*"):
        if path.is_file() and not (path.name == "per_video.csv" and "basicdet" in str(path)):
            target = results / path.relative_to(three_models / "results")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    specs = model_specs([m for m, _, _ in MODELS3], three_models / "experiments")
    written = write_report(specs, [0, 1, 2], results_dir=results, runs_dir=three_models / "runs", out_dir=tmp_path / "out",
                           claim=("ultradet", ["basicdet"]))
    check = json.loads(written["summary.json"].read_text())["claim_check"]
    assert check["baselines"] == ["basicdet"] and check["decides"] == "fold"
    assert check["decision"].startswith("The fold level decides: 3 per_video.csv file(s) are missing")
    assert len(check["patient_level"]["missing"]) == 3 and check["patient_level"]["comparisons"] == []
    assert "**Over patients.**" not in written["paper_table.md"].read_text()


@pytest.mark.filterwarnings("ignore:no loss curve", "ignore:The ``noload`` loader strategy:DeprecationWarning")
def test_report_stage_defaults_the_baselines_and_logs_both_levels(three_models, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = tmp_path / "params.yaml"
    params.write_text(f"models: [fasterrcnn, basicdet, ultradet]\nfolds: [0, 1, 2]\n"
                      f"report: {{out: {tmp_path / 'out'}, claim: {{model: ultradet}}}}\n"
                      "tracking: {uri: http://127.0.0.1:9, experiment: claim-test}\n")
    argv = ["--params", str(params), "--results", str(three_models / "results"), "--runs", str(three_models / "runs"), "--mlflow"]
    assert load_report_stage().main(argv) == 0
    check = json.loads((tmp_path / "out" / "summary.json").read_text())["claim_check"]
    assert check["baselines"] == ["fasterrcnn", "basicdet"]
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("claim-test").experiment_id], "tags.`ultradet.role` = 'report'")
    metrics, tags = run.data.metrics, run.data.tags
    assert metrics["claim_patients/basicdet/FP90_p"] == pytest.approx(check["patient_level"]["comparisons"][5]["p_value"])
    assert metrics["claim/fasterrcnn/Pr80_mdd"] == pytest.approx(check["comparisons"][2]["mdd"])
    assert tags["ultradet.claim_check"] == f"{check['decision']} {check['patient_level']['sentence']}"


def _fold(n: int, mdd: float, metric: str = "FP80") -> PairedComparison:
    return PairedComparison("b", metric, n, -1.0, -3.0, 1.0, "inconclusive", mdd)


def _patient(n: int, mdd: float, metric: str = "FP80", verdict: str = "better") -> PatientComparison:
    return PatientComparison("b", metric, n, -2.0, -3.0, -1.0, 0.004, 9, 2, 1, mdd, verdict)


def test_the_level_with_more_pairs_decides():
    names = {"b": "Base"}
    decides, sentence = decide([_fold(4, 30.0)], [_patient(32, 5.0), _patient(32, 0.07, "recall80")], [], names)
    assert decides == "patient"
    assert sentence == ("The patient level decides: it pairs n=32 patients against n=4 folds, so it detects smaller "
                        "differences (MDD at 80% power, over baselines: FP80 5.0/min over patients against 30.0/min over folds).")
    assert decide([_fold(4, 30.0)], [_patient(4, 5.0)], [], names) == (
        "fold", "The fold level decides: the patient level pairs n=4 patients, no more than the n=4 folds.")
    decides, sentence = decide([_fold(4, 30.0)], [], [Path("results/u/fold0/per_video.csv")], names)
    assert decides == "fold" and "1 per_video.csv file(s) are missing (e.g. results/u/fold0/per_video.csv)" in sentence


def test_patient_sentence_quotes_the_fp_comparisons_only():
    sentence = patient_sentence([_patient(32, 5.0), _patient(32, 0.07, "recall80", "inconclusive")], "UltraDet", {"b": "Base"})
    assert sentence == (
        "The claim holds here: UltraDet beats Base on every FP metric (paired over n=32 patients pooled over folds, "
        "95% bootstrap intervals of the mean difference with patients resampled within folds, Wilcoxon signed-rank p: "
        "FP80 vs Base -2.0/min [-3.0/min, -1.0/min], p 0.004, better for 9, worse for 2 patients).")
