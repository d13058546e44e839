"""Paired patient-level comparison of a model with a baseline, from the per-video rows of every
fold (``results/<model>/fold<k>/per_video.csv``, :mod:`ultradet.evaluation.per_video`).

Four folds cannot show an effect the test videos can: this pools the folds' test videos and pairs
them across the two models (the same ``(fold, video_id)``, each model at its own fold threshold).
The unit is the **patient**, so that the videos of one patient (not independent) count once:
each patient's value pools its videos, ``FP<r>`` = sum of FP sequences / sum of minutes (FP
sequences per minute at 30 fps), ``recall<r>`` = sum of detected GT boxes / sum of GT boxes (a
fraction); for a patient with one video these are the video's own values. The differences
``d_i = model_i - baseline_i`` over the n patients are summarised by:

- their mean, with a two-sided 95 % **percentile bootstrap interval** (Efron & Tibshirani, *An
  Introduction to the Bootstrap*, 1993, chapter 13) of ``RESAMPLES`` resamples drawn with a
  seeded ``numpy.random.Generator``. Resampling is **stratified by fold**: each resample draws,
  with replacement, as many patients from each fold as the fold has (the folds are the design's
  strata, each evaluated at its own thresholds; Efron & Tibshirani 1993, section 8.3, resample
  each sample separately; Davison & Hinkley, *Bootstrap Methods and their Application*, 1997,
  section 3.2, several samples: stratified resampling);
- the **Wilcoxon signed-rank test** (Wilcoxon, Biometrics Bulletin 1(6), 1945) p value,
  ``scipy.stats.wilcoxon`` with its defaults (two-sided; zero differences dropped; the exact null
  distribution for small n without ties, the normal approximation otherwise), 1.0 when every
  difference is zero;
- how many patients are better, worse and tied for the model;
- the minimum detectable difference of the design (:mod:`ultradet.report.power`).

A comparison is ``better`` when the bootstrap interval lies entirely on the model's favourable
side **and** the Wilcoxon p is below 0.05, ``worse`` when both point the other way,
``inconclusive`` otherwise, ``undefined`` below two pairs. Both must agree because the percentile
interval alone is too narrow with few patients: 3 better and 5 tied of 8 in one fold exclude 0
in 98 % of resamples (all 8 drawn from the tied: (5/8)^8 = 2.3 %), while a signed-rank test on 3
non-zero differences cannot go below p = 0.25.
A (model, fold) whose PR curve never reaches a recall level holds no operating point there (its
threshold is the evaluator's fallback, see :func:`ultradet.report.claim.measured_only`): its
patients are left out of that level's comparisons.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ultradet.evaluation.names import OPERATING_POINTS, fp_name
from ultradet.evaluation.per_video import fp_sequences_name, point_columns, tp_name, video_recall_name
from ultradet.report.claim import CONFIDENCE, format_difference, interval_verdict, verdict_head
from ultradet.report.power import minimum_detectable_difference

RESAMPLES = 10_000
SEED = 0


@dataclass(frozen=True)
class PatientMetric:
    """A per-patient metric: ``numerator`` / ``denominator`` summed over the patient's videos."""

    name: str
    recall: float
    numerator: str
    denominator: str
    higher_is_better: bool


# FP sequences per minute (lower is better) and recall (a fraction) at each operating point.
PATIENT_METRICS = tuple(PatientMetric(fp_name(r), r, fp_sequences_name(r), "minutes", False) for r in OPERATING_POINTS) + tuple(
    PatientMetric(video_recall_name(r), r, tp_name(r), "num_gt_boxes", True) for r in OPERATING_POINTS
)


@dataclass(frozen=True)
class PatientComparison:
    """``model - baseline`` on one metric over patients (FP in sequences per minute, recall as a
    fraction): n patients, mean difference, its bootstrap interval, the Wilcoxon p value, the
    patients better / worse / tied for the model, and the minimum detectable difference."""

    baseline: str
    metric: str
    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    better: int
    worse: int
    tied: int
    mdd: float
    verdict: str  # better | worse | inconclusive | undefined


def stratified_resamples(strata: np.ndarray, *, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap resamples that keep each stratum's size.

    Args:
        strata: (n,) the stratum (fold) of each unit (patient).
        resamples: B.

    Returns:
        int64 (B, n) indices into the n units: in every row, for each stratum (ascending), as
        many indices of its own units, drawn uniformly with replacement, as it has units.
    """
    strata = np.asarray(strata)
    parts = []
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        parts.append(members[rng.integers(0, len(members), size=(resamples, len(members)))])
    return np.concatenate(parts, axis=1) if parts else np.zeros((resamples, 0), dtype=np.int64)


def bootstrap_interval(
    diff: np.ndarray, strata: np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Two-sided percentile bootstrap interval of ``diff.mean()`` (module docstring), resampling
    within strata; deterministic for a given ``seed``.

    Args:
        diff: float (n,) differences, finite; strata: (n,) the stratum of each.

    Returns:
        ``(low, high)``, the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles
        (``numpy.percentile``, linear) of the resampled means; NaN for n < 2.
    """
    diff = np.asarray(diff, dtype=np.float64)
    if len(diff) < 2:
        return math.nan, math.nan
    means = diff[stratified_resamples(strata, resamples=resamples, rng=np.random.default_rng(seed))].mean(axis=1)
    tail = 50 * (1 - confidence)
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def wilcoxon_p(diff: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p value of ``diff`` (module docstring); NaN without data."""
    diff = np.asarray(diff, dtype=np.float64)
    if len(diff) == 0:
        return math.nan
    if not np.any(diff != 0):
        return 1.0
    return float(stats.wilcoxon(diff).pvalue)


def measured_rows(per_video: pd.DataFrame, max_recall: Mapping[tuple[str, int], float]) -> pd.DataFrame:
    """``per_video`` with the columns of each operating point r set to NaN on the (model, fold)s
    whose PR curve ends below recall r (absent from ``max_recall``: kept)."""
    out = per_video.copy()
    reached = pd.Series([max_recall.get(key, 1.0) for key in zip(out.model, out.fold)], index=out.index, dtype=float)
    for r in OPERATING_POINTS:
        columns = [c for c in point_columns(r) if c in out.columns]
        out.loc[reached < r, columns] = np.nan
    return out


def paired_patients(per_video: pd.DataFrame, model: str, baseline: str, metric: PatientMetric) -> pd.DataFrame:
    """One row per patient with both models measured on ``metric``: ``fold, patient_id, model,
    baseline`` (the two values), from the videos present for both models.

    Args:
        per_video: long frame of every (model, fold)'s ``per_video.csv`` with ``model`` and
            ``fold`` columns (:func:`ultradet.report.inputs.load_per_video`).
    """
    keys, values = ["fold", "video_id", "patient_id"], [metric.numerator, metric.denominator]
    pair = per_video[per_video.model == model][keys + values].merge(
        per_video[per_video.model == baseline][keys + values], on=keys, suffixes=("_m", "_b")
    )
    patient = [pair.fold, pair.patient_id]
    sums = pair.drop(columns=keys).groupby(patient).sum()
    incomplete = pair.drop(columns=keys).isna().groupby(patient).any().any(axis=1)  # a video without a value
    rows = pd.DataFrame({
        "model": sums[f"{metric.numerator}_m"] / sums[f"{metric.denominator}_m"],
        "baseline": sums[f"{metric.numerator}_b"] / sums[f"{metric.denominator}_b"],
    }).mask(incomplete)
    return rows[np.isfinite(rows).all(axis=1)].reset_index()


def compare_patients(
    per_video: pd.DataFrame, model: str, baselines: Sequence[str], *, resamples: int = RESAMPLES, seed: int = SEED
) -> list[PatientComparison]:
    """``model`` against each baseline on each of :data:`PATIENT_METRICS` (module docstring).

    Args:
        per_video: as in :func:`paired_patients`, already masked by :func:`measured_rows`.
    """
    found = []
    for baseline in baselines:
        for metric in PATIENT_METRICS:
            rows = paired_patients(per_video, model, baseline, metric)
            found.append(_compare(baseline, metric, rows, resamples=resamples, seed=seed))
    return found


def _compare(baseline: str, metric: PatientMetric, rows: pd.DataFrame, *, resamples: int, seed: int) -> PatientComparison:
    diff = (rows["model"] - rows["baseline"]).to_numpy()
    low, high = bootstrap_interval(diff, rows["fold"].to_numpy(), resamples=resamples, seed=seed)
    sign = 1 if metric.higher_is_better else -1
    p_value = wilcoxon_p(diff)
    verdict = "undefined" if len(diff) < 2 else interval_verdict(low, high, higher_is_better=metric.higher_is_better)
    if verdict != "undefined" and not p_value < 1 - CONFIDENCE:
        verdict = "inconclusive"  # the interval alone is too narrow with few patients (module docstring)
    return PatientComparison(
        baseline=baseline, metric=metric.name, n=len(diff), mean_diff=float(diff.mean()) if len(diff) else math.nan,
        ci_low=low, ci_high=high, p_value=p_value, better=int(np.sum(sign * diff > 0)),
        worse=int(np.sum(sign * diff < 0)), tied=int(np.sum(diff == 0)), mdd=minimum_detectable_difference(diff),
        verdict=verdict,
    )


def patient_comparisons_dict(comparisons: Sequence[PatientComparison]) -> list[dict]:
    """JSON-ready comparisons (NaN -> None)."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(c).items()} for c in comparisons]


def patient_sentence(comparisons: Sequence[PatientComparison], model_name: str, names: dict[str, str]) -> str:
    """One sentence, made from the numbers, on the patient-level FP comparisons (the claim's
    metrics here; the recall rows only describe how the detections spread over patients)."""
    fp = [c for c in comparisons if c.metric.startswith("FP")]
    verdicts = {c.verdict for c in fp}
    if not fp or verdicts == {"undefined"}:
        return f"The claim cannot be checked over patients: fewer than two patients have {model_name} and a baseline both measured."
    against = " and ".join(dict.fromkeys(names.get(c.baseline, c.baseline) for c in fp))
    detail = "; ".join(
        f"{c.metric} vs {names.get(c.baseline, c.baseline)} {format_difference(c.metric, c.mean_diff)} "
        f"[{format_difference(c.metric, c.ci_low)}, {format_difference(c.metric, c.ci_high)}], "
        f"p {format_p(c.p_value)}, better for {c.better}, worse for {c.worse} patients"
        for c in fp
    )
    head = verdict_head(verdicts, model_name, against, "FP metric")
    return (
        f"{head} (paired over n={max(c.n for c in fp)} patients pooled over folds, {CONFIDENCE:.0%} bootstrap "
        f"intervals of the mean difference with patients resampled within folds, Wilcoxon signed-rank p: {detail})."
    )


def format_p(p: float) -> str:
    """A p value for text: ``0.004``, ``<0.001``, ``n/a``."""
    if not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"

