"""Metric names have one home (ultradet.evaluation.names): what evaluate() writes, what the CLI
prints, what the report aggregates and what the tuner optimises by default all come from it."""

from evaltoy import det, make_gt

from ultradet.evaluation import evaluate
from ultradet.evaluation import names
from ultradet.evaluation.__main__ import format_summary


def test_evaluate_writes_exactly_the_named_metrics():
    gt = make_gt({1: [[[0, 0, 10, 10]], []]})
    metrics = evaluate(gt, [det(1, 0, [0, 0, 10, 10], 0.9)]).metrics
    expected = names.AP_METRICS + names.PRECISION_METRICS + names.THRESHOLD_METRICS + names.FP_METRICS
    assert list(metrics) == list(expected + (names.RECALL_METRIC,) + names.COUNT_KEYS)
    assert names.PRECISION_METRICS == ("Pr70", "Pr80", "Pr90") and names.RECALL_METRIC == "R16"
    assert [line.split()[0] for line in format_summary(evaluate(gt, [])).splitlines()[2:15]] == [
        *names.AP_METRICS, *names.PRECISION_METRICS, *names.THRESHOLD_METRICS, *names.FP_METRICS, "R@16"
    ]


def test_report_and_tuning_take_their_names_from_evaluation():
    from ultradet.report import METRIC_KEYS
    from ultradet.report.published import PUBLISHED_METRICS
    from ultradet.report.table import UNITS
    from ultradet.tuning.space import DEFAULT_METRIC

    assert METRIC_KEYS == names.TABLE_METRICS and set(UNITS) == set(names.TABLE_METRICS)
    assert PUBLISHED_METRICS == names.PAPER_METRICS == ("Pr80", "Pr90", "FP80", "FP90", "AP50", "R16", "FPS")
    assert {k for k, unit in UNITS.items() if unit == "%"} == set(names.FRACTION_METRICS)
    assert DEFAULT_METRIC == "FP90"
