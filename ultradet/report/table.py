"""The results table: fold statistics per model and metric, and their paper-style renderings.

Statistics live in a *long* frame (one row per model and metric: ``model, display_name, group,
type, metric, mean, sd, se, n, ci_low, ci_high``, the last two the 95 % t interval of the mean
over folds, :func:`ultradet.report.intervals.t_interval`) in table units: Pr, AP, mAP and R
multiplied by 100 (percent), FP in FP sequences per minute, FPS in frames per second. The
published table uses the same layout, so one formatter renders both.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ultradet.evaluation.names import FP_METRICS, FPS_METRIC, FRACTION_METRICS
from ultradet.report.inputs import METRIC_KEYS, ModelSpec
from ultradet.report.intervals import t_interval

# The README's group order; groups not listed follow in order of appearance.
GROUP_ORDER = ("One-stage", "DETR-based", "Faster R-CNN-based")


@dataclass(frozen=True)
class Column:
    """A table column: header ``label``, ``metric`` key, and whether higher is better."""

    label: str
    metric: str
    higher_is_better: bool = True


PAPER_COLUMNS = (
    Column("Pr80", "Pr80"),
    Column("Pr90", "Pr90"),
    Column("FP80", "FP80", higher_is_better=False),
    Column("FP90", "FP90", higher_is_better=False),
    Column("AP50", "AP50"),
    Column("R@16", "R16"),
    Column("FPS", "FPS"),
)

UNITS = {k: "%" for k in FRACTION_METRICS}
UNITS.update({k: "FP sequences/min" for k in FP_METRICS})
UNITS[FPS_METRIC] = "frames/s"
_STAT_COLUMNS = ["model", "display_name", "group", "type", "metric", "mean", "sd", "se", "n", "ci_low", "ci_high"]


def _scale(metric: str) -> float:
    """metrics.json holds fractions for the percent metrics (docs/architecture.md)."""
    return 100.0 if UNITS[metric] == "%" else 1.0


def order_specs(specs: Sequence[ModelSpec]) -> list[ModelSpec]:
    """Models in the paper's grouping: groups in :data:`GROUP_ORDER`, the given order within."""
    groups = list(GROUP_ORDER) + [s.group for s in specs if s.group not in GROUP_ORDER]
    return sorted(specs, key=lambda s: groups.index(s.group))


def summarize(fold_metrics: pd.DataFrame, specs: Sequence[ModelSpec], *, ddof: int = 1) -> pd.DataFrame:
    """Mean, std, standard error and count over folds, per model and metric.

    Args:
        fold_metrics: long frame ``model, fold, metric, value`` (metrics.json units), e.g. from
            :func:`ultradet.report.inputs.load_fold_metrics`.
        specs: the models, in the paper's order (:func:`order_specs`).
        ddof: delta degrees of freedom of ``sd`` (1: sample sd; 0: population sd as the original).

    Returns:
        The long statistics frame (module docstring) in ``specs`` then :data:`METRIC_KEYS` order.
        NaN fold values are left out of ``n``; ``sd``/``se`` are NaN when ``n <= ddof``, the
        interval (sample sd whatever ``ddof``) when ``n < 2``.
    """
    rows = []
    for spec in specs:
        values = fold_metrics[fold_metrics["model"] == spec.name]
        for metric in METRIC_KEYS:
            x = values.loc[values["metric"] == metric, "value"].to_numpy(float) * _scale(metric)
            n, mean, low, high = t_interval(x)  # n and mean over the finite folds
            x = x[np.isfinite(x)]
            sd = float(np.std(x, ddof=ddof)) if n > ddof else math.nan
            rows.append((spec.name, spec.display_name, spec.group, spec.type, metric, mean, sd, sd / math.sqrt(n) if n else math.nan, n, low, high))
    return pd.DataFrame(rows, columns=_STAT_COLUMNS)


# -------------------------------------------------------------------------------- rendering
_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {"†": "$^\\dagger$"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _cell(mean: float, spread: float | tuple[float, float], bold: bool, style: str) -> str:
    """``mean ± sd`` (``spread`` a number) or ``mean [low, high]`` (a pair), 1 decimal."""
    if math.isnan(mean):
        return "--" if style == "latex" else "–"
    if isinstance(spread, tuple):
        text = f"{mean:.1f}" + ("" if math.isnan(spread[0]) else f" [{spread[0]:.1f}, {spread[1]:.1f}]")
    else:
        pm = " $\\pm$ " if style == "latex" else " ± "
        text = f"{mean:.1f}" + ("" if math.isnan(spread) else f"{pm}{spread:.1f}")
    if not bold:
        return text
    return f"\\textbf{{{text}}}" if style == "latex" else f"**{text}**"


def _best_mask(means: pd.Series, higher_is_better: bool) -> pd.Series:
    """Cells holding the best mean *as displayed* (1 decimal), so visible ties are all bold."""
    shown = means.round(1)
    best = shown.max() if higher_is_better else shown.min()
    return shown == best


def format_table(
    summary: pd.DataFrame, style: str = "markdown", *, bold: bool = True, intervals: bool = False
) -> pd.DataFrame:
    """The paper-style table as strings: ``Group, Model, Type`` and the :data:`PAPER_COLUMNS`,
    one row per model in ``summary``'s order, "mean ± sd" (or "mean [low, high]", the 95 % t
    interval over folds, with ``intervals``) with 1 decimal, best mean per column bold (FP:
    lowest) unless ``bold`` is False. The group name appears on the first row of each group only.

    Args:
        summary: long statistics frame (:func:`summarize` or the published one; ``intervals``
            needs :func:`summarize`'s ``ci_low``/``ci_high``).
        style: ``"markdown"`` (``**bold**``) or ``"latex"`` (``\\textbf``, ``$\\pm$``, escaped text).
        bold: mark each column's best mean (off where rows of different sources are mixed).
        intervals: cells give the interval of the mean instead of the sd.
    """
    if style not in ("markdown", "latex"):
        raise ValueError(f"style must be 'markdown' or 'latex', got {style!r}")
    models = summary.drop_duplicates("model").set_index("model")
    values = ["mean", "sd", "ci_low", "ci_high"] if intervals else ["mean", "sd"]
    stats = summary.pivot(index="model", columns="metric", values=values).loc[models.index]
    text = _latex_escape if style == "latex" else str
    table = pd.DataFrame(
        {
            "Group": [text(g) if first else "" for g, first in zip(models["group"], ~models["group"].duplicated())],
            "Model": [text(name) for name in models["display_name"]],
            "Type": [text(t) for t in models["type"]],
        }
    )
    for col in PAPER_COLUMNS:
        means = stats[("mean", col.metric)]
        spreads = (
            list(zip(stats[("ci_low", col.metric)], stats[("ci_high", col.metric)])) if intervals else stats[("sd", col.metric)]
        )
        best = _best_mask(means, col.higher_is_better) & bold
        table[col.label] = [_cell(m, s, b, style) for m, s, b in zip(means, spreads, best)]
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub markdown table (numbers right-aligned)."""
    align = ["left"] * 3 + ["right"] * (len(table.columns) - 3)
    return table.to_markdown(index=False, disable_numparse=True, colalign=align)


def to_latex(table: pd.DataFrame, caption: str, label: str = "tab:results") -> str:
    """A ``table`` environment (needs ``\\usepackage{booktabs}``); ``caption`` is LaTeX source."""
    column_format = "lll" + "r" * (len(table.columns) - 3)
    return table.to_latex(index=False, escape=False, column_format=column_format, caption=caption, label=label)


# ------------------------------------------------------------------------ machine-readable
def to_long_csv(summary: pd.DataFrame, path: str | Path, *, ddof: int) -> None:
    """Write the statistics (every metric, full precision) with ``unit`` and ``ddof`` columns."""
    out = summary.assign(unit=summary["metric"].map(UNITS), ddof=ddof)
    out.to_csv(path, index=False)


def summary_dict(summary: pd.DataFrame, *, ddof: int, folds: Sequence[int]) -> dict:
    """``{"ddof", "folds", "units", "models": {name: {"display_name", "group", "type",
    <metric>: {"mean", "sd", "se", "n", "ci_low", "ci_high"}}}}`` with NaN as ``None`` (a DVC
    metrics file)."""
    models: dict = {}
    for row in summary.itertuples(index=False):
        entry = models.setdefault(row.model, {"display_name": row.display_name, "group": row.group, "type": row.type})
        entry[row.metric] = {
            "mean": _json_float(row.mean),
            "sd": _json_float(row.sd),
            "se": _json_float(row.se),
            "n": int(row.n),
            "ci_low": _json_float(row.ci_low),
            "ci_high": _json_float(row.ci_high),
        }
    return {"ddof": ddof, "folds": list(folds), "units": UNITS, "models": models}


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def write_json(data: dict, path: str | Path) -> None:
    """Write ``data`` as indented JSON (strictly valid: no NaN)."""
    Path(path).write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
