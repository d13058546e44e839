"""The report's claim check: paired differences over folds, t intervals, verdicts, the sentence,
and where it lands (paper_table.md, summary.json)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from test_report import fake_metrics  # the same fake per-fold metrics as the report tests
from ultradet.report import model_specs, write_report
from ultradet.report.claim import check_claim, claim_sentence, measured_only, paired_comparison


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
