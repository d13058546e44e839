"""The paper's results table (md, tex, csv), the published table, summary.json and plots, built
from the pipeline's per-fold files only (``results/``, ``runs/``)."""

from ultradet.report.build import measured_note, write_report
from ultradet.report.inputs import (
    METRIC_KEYS,
    ModelSpec,
    ReportInputError,
    load_fold_metrics,
    model_specs,
    trained_model_specs,
)
from ultradet.report.published import published_summary
from ultradet.report.table import PAPER_COLUMNS, format_table, summarize

__all__ = [
    "METRIC_KEYS",
    "PAPER_COLUMNS",
    "ModelSpec",
    "ReportInputError",
    "format_table",
    "load_fold_metrics",
    "measured_note",
    "model_specs",
    "published_summary",
    "summarize",
    "trained_model_specs",
    "write_report",
]
