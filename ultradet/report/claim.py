"""Claim check: does UltraDet suppress false positives better than its baselines on the data the
pipeline ran on?

The paper's claim (Yu et al., MICCAI 2023, section 3, table 1): at equal recall, UltraDet has fewer
false-positive sequences per minute (FP80, FP90) and higher precision (Pr80, Pr90) than BasicDet
and the single-frame FasterRCNN. Here it is tested per fold and as a **paired comparison over
folds**: for each baseline and metric, the per-fold differences ``d_k = UltraDet_k - baseline_k``,
their mean and a two-sided 95 % **paired t interval** (``mean +- t_{0.975, n-1} * sd / sqrt(n)``,
sample sd). A t interval rather than a bootstrap: with four folds a bootstrap has only 35 distinct
resamples and understates the spread.

A comparison is ``better`` when the interval lies entirely on UltraDet's favourable side (FP
below 0, Pr above 0), ``worse`` when it lies entirely on the other side, ``inconclusive``
otherwise, and ``undefined`` when fewer than two folds have both values. Each comparison also
gives the minimum detectable difference of the fold design (:mod:`ultradet.report.power`).
The baselines default to every other model of the report (the paper's claim is against every
row of its table).

A fold whose precision-recall curve never reaches a metric's recall level holds no measurement
of that metric: the evaluator then reports the last detection's precision and FP rate (spec
section 4). :func:`measured_only` leaves such folds out of that metric's comparisons.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ultradet.evaluation.names import OPERATING_POINTS, fp_name, precision_name
from ultradet.report.intervals import CONFIDENCE, t_interval
from ultradet.report.power import minimum_detectable_difference

# (metric, its recall level, higher is better)
CLAIM_METRICS = tuple((fp_name(r), r, False) for r in OPERATING_POINTS) + tuple((precision_name(r), r, True) for r in OPERATING_POINTS)


@dataclass(frozen=True)
class PairedComparison:
    """UltraDet minus one baseline on one metric, over folds (metric units of ``metrics.json``:
    FP in sequences per minute, Pr as a fraction)."""

    baseline: str
    metric: str
    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    verdict: str  # better | worse | inconclusive | undefined
    mdd: float = math.nan  # minimum detectable difference over the n folds (ultradet.report.power)


def claim_baselines(model: str, baselines: Sequence[str] | None, models: Sequence[str]) -> list[str]:
    """The baselines of the claim check: ``baselines`` that are among ``models`` (order kept), or
    every model of ``models`` but ``model`` when ``baselines`` is None or empty."""
    chosen = baselines or models
    return [b for b in dict.fromkeys(chosen) if b in models and b != model]


def interval_verdict(low: float, high: float, *, higher_is_better: bool) -> str:
    """``better`` / ``worse`` when the interval ``[low, high]`` of ``model - baseline`` lies
    entirely on the model's favourable / unfavourable side of 0, else ``inconclusive``."""
    good_side = low > 0 if higher_is_better else high < 0
    bad_side = high < 0 if higher_is_better else low > 0
    return "better" if good_side else "worse" if bad_side else "inconclusive"


def paired_comparison(model: np.ndarray, baseline: np.ndarray, *, higher_is_better: bool) -> tuple[int, float, float, float, str]:
    """``(n, mean, ci_low, ci_high, verdict)`` of ``model - baseline`` over the folds where both
    are finite (arrays of equal length, one value per fold)."""
    n, mean, low, high = t_interval(np.asarray(model, float) - np.asarray(baseline, float))
    if n < 2:
        return n, mean, low, high, "undefined"
    return n, mean, low, high, interval_verdict(low, high, higher_is_better=higher_is_better)


def measured_only(fold_metrics: pd.DataFrame, max_recall: Mapping[tuple[str, int], float]) -> pd.DataFrame:
    """``fold_metrics`` with each claim metric set to NaN on the (model, fold)s whose maximum
    recall (the end of the fold's PR curve) is below the metric's recall level, where its value
    is the evaluator's fallback. (model, fold)s absent from ``max_recall`` are kept.

    Args:
        fold_metrics: long frame ``model, fold, metric, value`` (``load_fold_metrics``).
        max_recall: ``{(model, fold): recall in [0, 1]}``.
    """
    level = {metric: r for metric, r, _ in CLAIM_METRICS}
    reached = [
        max_recall.get((row.model, row.fold), 1.0) >= level.get(row.metric, 0.0) for row in fold_metrics.itertuples()
    ]
    return fold_metrics.assign(value=fold_metrics.value.where(reached))


def check_claim(fold_metrics: pd.DataFrame, model: str, baselines: Sequence[str]) -> list[PairedComparison]:
    """Paired comparisons of ``model`` against each baseline on :data:`CLAIM_METRICS`.

    Args:
        fold_metrics: long frame ``model, fold, metric, value`` (``load_fold_metrics``).
        model: the model whose claim is tested (``"ultradet"``).
        baselines: the models it is compared with, e.g. ``["basicdet", "fasterrcnn"]``.
    """
    wide = fold_metrics.pivot_table(index=["model", "fold"], columns="metric", values="value", dropna=False)
    found = []
    for baseline in baselines:
        for metric, _, higher in CLAIM_METRICS:
            pair = pd.concat([wide.loc[model, metric], wide.loc[baseline, metric]], axis=1, join="inner").to_numpy()
            n, mean, low, high, verdict = paired_comparison(pair[:, 0], pair[:, 1], higher_is_better=higher)
            mdd = minimum_detectable_difference(pair[:, 0] - pair[:, 1])
            found.append(PairedComparison(baseline, metric, n, mean, low, high, verdict, mdd))
    return found


def verdict_head(verdicts: set[str], model_name: str, against: str, metrics: str) -> str:
    """The verdict clause of a claim sentence from its comparisons' verdicts (``metrics``: what
    "every" refers to, e.g. ``"FP and precision metric"``)."""
    if verdicts == {"better"}:
        return f"The claim holds here: {model_name} beats {against} on every {metrics}"
    if "worse" in verdicts and "better" not in verdicts:
        return f"The claim does not hold here: {model_name} is significantly worse than a baseline and better on none"
    if "worse" in verdicts:
        return f"The claim holds only in part here: {model_name} is significantly better on some comparisons and worse on others"
    if "better" in verdicts:
        return f"The claim holds only in part here: {model_name} is significantly better on some comparisons, the rest are inconclusive"
    return f"The claim is not established here: no difference between {model_name} and {against} is significant"


def claim_sentence(comparisons: Sequence[PairedComparison], model_name: str, names: dict[str, str]) -> str:
    """One sentence, made from the numbers, saying whether the claim holds here."""
    verdicts = {c.verdict for c in comparisons}
    if not comparisons or verdicts == {"undefined"}:
        return f"The claim cannot be checked here: fewer than two folds have {model_name} and a baseline both measured."
    against = " and ".join(dict.fromkeys(names.get(c.baseline, c.baseline) for c in comparisons))
    n = max(c.n for c in comparisons)
    detail = "; ".join(
        f"{c.metric} vs {names.get(c.baseline, c.baseline)} {format_difference(c.metric, c.mean_diff)} "
        f"[{format_difference(c.metric, c.ci_low)}, {format_difference(c.metric, c.ci_high)}]"
        for c in comparisons
    )
    head = verdict_head(verdicts, model_name, against, "FP and precision metric")
    return f"{head} (paired over n={n} folds, {CONFIDENCE:.0%} t intervals of the mean difference: {detail})."


def format_difference(metric: str, value: float) -> str:
    """A signed difference in the report's units: fractions (``Pr``, ``recall``) in percentage
    points, FP in sequences per minute; ``n/a`` when not finite."""
    if not math.isfinite(value):
        return "n/a"
    return f"{100 * value:+.1f} pt" if metric.startswith(("Pr", "recall")) else f"{value:+.1f}/min"


def per_fold_table(fold_metrics: pd.DataFrame, models: Sequence[str], names: dict[str, str]) -> pd.DataFrame:
    """Rows ``fold``, columns ``<metric> <display name>`` for the claim metrics (table units:
    Pr in %, FP per minute)."""
    subset = fold_metrics[fold_metrics.model.isin(models) & fold_metrics.metric.isin([m for m, _, _ in CLAIM_METRICS])]
    subset = subset.assign(value=np.where(subset.metric.str.startswith("Pr"), 100 * subset.value, subset.value))
    wide = subset.pivot_table(index="fold", columns=["metric", "model"], values="value", dropna=False)
    columns = [(m, model) for m, _, _ in CLAIM_METRICS for model in models if (m, model) in wide.columns]
    table = wide[columns].round(1)
    table.columns = [f"{m} {names.get(model, model)}" for m, model in columns]
    return table


def comparisons_dict(comparisons: Sequence[PairedComparison]) -> list[dict]:
    """JSON-ready comparisons (NaN -> None)."""
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(c).items()} for c in comparisons]
