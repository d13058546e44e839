"""Report figures (PNG): PR and FP-rate curves with their spread over folds, training losses.

Figures are built with matplotlib's object API (``Figure``, rendered by Agg), never pyplot, so
no global backend or figure state is touched and nothing needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ultradet.report.inputs import ModelSpec

RECALL_GRID = np.linspace(0.0, 1.0, 201)  # common recall axis the folds are interpolated onto
DPI = 120


def curve_on_grid(curve: pd.DataFrame, x: str, y: str, grid: np.ndarray, extend_left: bool) -> np.ndarray:
    """``y`` of one fold's curve linearly interpolated at ``grid`` values of ``x``; NaN beyond the
    curve's largest ``x`` (and below its smallest, unless ``extend_left``).

    ``x`` must be non-decreasing along the file (recall is); where it repeats, the first point is
    kept: the operating point that first reaches that recall (highest precision, fewest FP).
    """
    points = curve[[x, y]].dropna().drop_duplicates(subset=x, keep="first")
    if points.empty:
        return np.full(len(grid), np.nan)
    xs, ys = points[x].to_numpy(float), points[y].to_numpy(float)
    return np.interp(grid, xs, ys, left=ys[0] if extend_left else np.nan, right=np.nan)


def fold_band(curves: Sequence[pd.DataFrame], x: str, y: str, grid: np.ndarray, extend_left: bool):
    """Mean, min and max over folds at each grid point; NaN where any fold's curve does not reach
    (so the mean never mixes different subsets of folds).

    Returns:
        ``(mean, low, high)``: float arrays shaped like ``grid``.
    """
    stacked = np.stack([curve_on_grid(c, x, y, grid, extend_left) for c in curves])
    return stacked.mean(axis=0), stacked.min(axis=0), stacked.max(axis=0)


def _new_axes(title: str, xlabel: str, ylabel: str):
    fig = Figure(figsize=(7, 5), dpi=DPI)
    ax = fig.subplots()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_curve_bands(
    curves: dict[str, list[pd.DataFrame]],
    specs: Sequence[ModelSpec],
    *,
    x: str,
    y: str,
    y_scale: float,
    title: str,
    ylabel: str,
    path: Path,
    extend_left: bool,
) -> Path:
    """One line per model (fold mean) with a shaded min-max band over folds; recall in percent
    on the x axis, ``y`` multiplied by ``y_scale``. Writes and returns ``path``."""
    fig, ax = _new_axes(title, "Recall (%)", ylabel)
    for i, spec in enumerate(specs):
        mean, low, high = fold_band(curves[spec.name], x, y, RECALL_GRID, extend_left)
        n = len(curves[spec.name])
        ax.plot(RECALL_GRID * 100, mean * y_scale, color=f"C{i}", label=f"{spec.display_name} (mean of {n} folds)")
        ax.fill_between(RECALL_GRID * 100, low * y_scale, high * y_scale, color=f"C{i}", alpha=0.2, linewidth=0)
    ax.set_xlim(0, 100)
    ax.legend(title="shaded: min-max over folds", loc="best")
    return _save(fig, path)


def plot_pr_curves(curves: dict[str, list[pd.DataFrame]], specs: Sequence[ModelSpec], path: Path) -> Path:
    """Precision-recall curves at IoU 0.5 from ``pr_curve.csv`` (``recall, precision``)."""
    return plot_curve_bands(
        curves, specs, x="recall", y="precision", y_scale=100, title="Precision-recall (IoU 0.5)",
        ylabel="Precision (%)", path=path, extend_left=True,
    )


def plot_fp_curves(curves: dict[str, list[pd.DataFrame]], specs: Sequence[ModelSpec], path: Path) -> Path:
    """False-positive sequences per minute vs recall from ``fp_curve.csv`` (``recall, fp_per_minute``)."""
    return plot_curve_bands(
        curves, specs, x="recall", y="fp_per_minute", y_scale=1, title="False-positive sequences vs recall",
        ylabel="FP sequences per minute (30 fps)", path=path, extend_left=False,
    )


def mean_losses(folds: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Fold mean of each loss column per iteration (index ``iteration``), over the folds that
    logged that iteration."""
    return pd.concat(folds).groupby("iteration").mean().sort_index()


def plot_losses(losses: dict[str, list[pd.DataFrame]], specs: Sequence[ModelSpec], path: Path) -> Path:
    """One panel per model: ``loss_total`` (bold) and each named loss, fold mean, smoothed by a
    centred moving average over 2% of the iterations; log y axis when all values are positive."""
    shown = [s for s in specs if s.name in losses]
    ncols = min(3, len(shown))
    nrows = -(-len(shown) // ncols)
    fig = Figure(figsize=(5 * ncols, 3.8 * nrows), dpi=DPI)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, spec in zip(axes, shown):
        _loss_panel(ax, spec, losses[spec.name])
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    fig.suptitle("Training losses (fold mean, moving average)")
    return _save(fig, path)


def _loss_panel(ax, spec: ModelSpec, folds: Sequence[pd.DataFrame]) -> None:
    mean = mean_losses(folds)
    window = max(1, len(mean) // 50)
    smooth = mean.rolling(window, min_periods=1, center=True).mean()
    for column in ["loss_total"] + [c for c in smooth.columns if c != "loss_total"]:
        ax.plot(smooth.index, smooth[column], label=column, linewidth=2.0 if column == "loss_total" else 1.0)
    if (smooth.to_numpy() > 0).all():
        ax.set_yscale("log")
    ax.set(title=f"{spec.display_name} ({len(folds)} folds, window {window} it.)", xlabel="Iteration", ylabel="Loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")


def plot_fp_causes(summary: pd.DataFrame, specs: Sequence[ModelSpec], path: Path) -> Path:
    """One panel per operating point (recall 0.8, 0.9): a bar per model, FP sequences per minute
    (fold mean) stacked by cause, from :func:`ultradet.report.fp_causes.summarize_fp_causes`."""
    recalls = sorted(summary["recall"].unique())
    causes = list(dict.fromkeys(summary["cause"]))  # the summary's cause order
    shown = [s for s in specs if s.name in set(summary["model"])]
    fig = Figure(figsize=(max(6.0, 1.2 * len(shown) * len(recalls) + 2), 5), dpi=DPI)
    axes = np.atleast_1d(fig.subplots(1, len(recalls), sharey=True, squeeze=False)).ravel()
    colours = {c: "0.6" if c == "background" else f"C{i}" for i, c in enumerate(causes)}
    x = np.arange(len(shown))
    for ax, recall in zip(axes, recalls):
        at = summary[summary["recall"] == recall].set_index(["model", "cause"])["fp_per_minute"]
        bottom = np.zeros(len(shown))
        for cause in causes:
            height = np.array([at.get((s.name, cause), np.nan) for s in shown], dtype=float)
            height = np.nan_to_num(height)
            ax.bar(x, height, bottom=bottom, color=colours[cause], label=cause)
            bottom += height
        ax.set_xticks(x, [s.display_name for s in shown], rotation=30, ha="right")
        ax.set(title=f"Recall {recall:g} (threshold thr{round(recall * 100)})")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("FP sequences per minute (fold mean)")
    axes[-1].legend(title="cause", loc="best")
    fig.suptitle("False positives by cause")
    return _save(fig, path)
