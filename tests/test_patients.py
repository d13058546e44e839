"""The patient-level comparison: the stratified bootstrap against its exact distribution, its
strata, the Wilcoxon test on a hand-computed case, the minimum detectable difference, and the
pairing and pooling of videos into patients."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ultradet.report.patients import (
    PATIENT_METRICS,
    bootstrap_interval,
    compare_patients,
    measured_rows,
    paired_patients,
    stratified_resamples,
    wilcoxon_p,
)
from ultradet.report.power import minimum_detectable_difference

FP80 = next(m for m in PATIENT_METRICS if m.name == "FP80")
RECALL80 = next(m for m in PATIENT_METRICS if m.name == "recall80")


def test_identical_differences_collapse_the_interval_to_the_mean():
    assert bootstrap_interval(np.full(5, -2.5), np.array([0, 0, 1, 1, 1])) == (-2.5, -2.5)


def test_interval_and_distribution_match_the_exact_stratified_bootstrap():
    """Fold 0 holds patients with differences 1 and 3, fold 1 with 5 and 9. A stratified resample
    draws 2 of fold 0 and 2 of fold 1: 4 x 4 equally likely draws, enumerated here. The extremes
    (1, 1, 5, 5) -> 3 and (3, 3, 9, 9) -> 6 each have probability 1/16 > 2.5 %, so the 95 %
    percentile interval is exactly [3, 6] (an unstratified bootstrap could reach (1+1+1+1)/4)."""
    diff, strata = np.array([1.0, 3, 5, 9]), np.array([0, 0, 1, 1])
    exact = Counter((a + b + c + d) / 4 for a, b in itertools.product([1, 3], repeat=2) for c, d in itertools.product([5, 9], repeat=2))
    assert bootstrap_interval(diff, strata, resamples=10_000, seed=7) == (3.0, 6.0)
    idx = stratified_resamples(strata, resamples=20_000, rng=np.random.default_rng(7))
    seen = Counter(diff[idx].mean(axis=1).tolist())
    assert set(seen) == set(exact)
    for mean, count in exact.items():
        assert seen[mean] / 20_000 == pytest.approx(count / 16, abs=0.01), mean


def test_resamples_keep_each_folds_patients_and_count():
    strata = np.array([2, 0, 1, 0, 2, 2, 0, 1, 0])
    idx = stratified_resamples(strata, resamples=500, rng=np.random.default_rng(0))
    assert idx.shape == (500, 9)
    for row in idx:
        assert np.array_equal(np.bincount(strata[row], minlength=3), np.bincount(strata))
    # every patient is drawn about once per resample (n_k draws among the n_k of its fold)
    np.testing.assert_allclose(np.bincount(idx.ravel(), minlength=9) / 500, 1.0, atol=0.15)


def test_bootstrap_is_deterministic_under_its_seed():
    rng = np.random.default_rng(1)
    diff, strata = rng.normal(size=30), rng.integers(0, 4, 30)
    first = bootstrap_interval(diff, strata, seed=3)
    assert bootstrap_interval(diff, strata, seed=3) == first
    assert first[0] < diff.mean() < first[1]


def test_wilcoxon_on_a_hand_computed_case():
    """|d| ranks 1..5, the negative one has rank 5: W- = 5. Of the 32 sign patterns, 10 have a
    negative rank sum <= 5 ({}, {1}..{5}, {1,2}, {1,3}, {1,4}, {2,3}): p = 2 * 10 / 32."""
    d = np.array([1.0, 2, 3, 4, -5])
    assert wilcoxon_p(d) == pytest.approx(0.625)
    assert wilcoxon_p(d) == pytest.approx(stats.wilcoxon(d).pvalue)
    assert wilcoxon_p(np.r_[0.0, d]) == pytest.approx(0.625)  # a zero difference is dropped
    assert wilcoxon_p(np.zeros(4)) == 1.0 and math.isnan(wilcoxon_p(np.zeros(0)))


def test_minimum_detectable_difference_by_hand():
    # d = 1, 2, 3, 4: sd = sqrt(5/3), n = 4; z(0.975) + z(0.8) = 1.959964 + 0.841621
    assert minimum_detectable_difference(np.array([1.0, 2, 3, 4])) == pytest.approx(2.801585 * math.sqrt(5 / 3) / 2, rel=1e-6)
    assert math.isnan(minimum_detectable_difference(np.array([1.0, math.nan])))


def rows(model: str, fold: int, video: int, patient: str, **values) -> dict:
    base = {"model": model, "fold": fold, "video_id": video, "patient_id": patient, "minutes": 1.0,
            "num_gt_boxes": 10, "fp_sequences80": 0.0, "tp80": 8.0, "fp_sequences90": 0.0, "tp90": 9.0}
    return {**base, **values}


def test_a_patients_videos_are_pooled_not_averaged():
    per_video = pd.DataFrame([
        rows("m", 0, 1, "p", fp_sequences80=2, minutes=1), rows("m", 0, 2, "p", fp_sequences80=3, minutes=3),
        rows("b", 0, 1, "p", fp_sequences80=1, minutes=1), rows("b", 0, 2, "p", fp_sequences80=0, minutes=3),
        rows("m", 1, 3, "q", tp80=2), rows("b", 1, 3, "q", tp80=6),
    ])
    fp = paired_patients(per_video, "m", "b", FP80).set_index("patient_id")
    assert fp.loc["p", "model"] == pytest.approx(5 / 4)  # (2 + 3) / (1 + 3), not (2 + 1) / 2
    assert fp.loc["p", "baseline"] == pytest.approx(1 / 4)
    recall = paired_patients(per_video, "m", "b", RECALL80).set_index("patient_id")
    assert (recall.loc["q", "model"], recall.loc["q", "baseline"]) == (0.2, 0.6)


def test_only_videos_of_both_models_pair_and_a_missing_value_drops_the_patient():
    per_video = pd.DataFrame([
        rows("m", 0, 1, "p", fp_sequences80=1), rows("b", 0, 1, "p", fp_sequences80=2),
        rows("m", 0, 2, "p", fp_sequences80=9),  # only one model has video 2: not paired
        rows("m", 0, 3, "r", fp_sequences80=math.nan), rows("b", 0, 3, "r"),
        rows("m", 0, 4, "r", fp_sequences80=1), rows("b", 0, 4, "r"),
    ])
    paired = paired_patients(per_video, "m", "b", FP80)
    assert paired[["patient_id", "model", "baseline"]].values.tolist() == [["p", 1.0, 2.0]]


def test_folds_below_the_recall_level_are_masked_for_that_level_only():
    per_video = pd.DataFrame([rows("m", 0, 1, "p", fp_sequences90=1.0, FP80=1.0), rows("m", 1, 2, "q", fp_sequences90=1.0)])
    masked = measured_rows(per_video, {("m", 0): 0.85})
    assert math.isnan(masked.loc[0, "fp_sequences90"]) and masked.loc[0, "fp_sequences80"] == 0.0
    assert masked.loc[1, "fp_sequences90"] == 1.0  # fold 1 not in max_recall: kept


def _fp80(fp_m, fp_b):
    per_video = pd.DataFrame(
        [rows("m", k % 2, k, f"p{k}", fp_sequences80=v) for k, v in enumerate(fp_m)]
        + [rows("b", k % 2, k, f"p{k}", fp_sequences80=v) for k, v in enumerate(fp_b)]
    )
    return next(c for c in compare_patients(per_video, "m", ["b"], resamples=2000) if c.metric == "FP80")


def test_compare_patients_counts_and_verdicts():
    fp_m, fp_b = [1, 2, 2, 0, 1, 3, 1, 1], [4, 2, 6, 3, 5, 7, 3, 2]  # model better on 7, tied on 1
    c, diff = _fp80(fp_m, fp_b), np.subtract(fp_m, fp_b)
    assert (c.n, c.better, c.worse, c.tied) == (8, 7, 0, 1)
    assert c.mean_diff == pytest.approx(diff.mean()) and c.ci_high < 0
    assert c.p_value == pytest.approx(stats.wilcoxon(diff).pvalue) and c.p_value < 0.05 and c.verdict == "better"
    assert c.mdd == pytest.approx(minimum_detectable_difference(diff))
    worse = _fp80(fp_b, fp_m)
    assert (worse.better, worse.worse, worse.verdict) == (0, 7, "worse")


def test_an_interval_off_zero_without_a_significant_rank_test_is_inconclusive():
    # 3 better, 5 tied: the bootstrap interval excludes 0, but 3 signed ranks give p = 2 / 8 at best
    c = _fp80([1, 1, 1, 2, 2, 2, 2, 2], [4, 5, 3, 2, 2, 2, 2, 2])
    assert c.ci_high < 0 and c.p_value == pytest.approx(0.25) and c.verdict == "inconclusive"
