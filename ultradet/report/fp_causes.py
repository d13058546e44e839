"""The report's "False positives by cause" section: per model, the fold mean of the FP
detections and FP sequences per minute of each cause (localisation, lesion mimic by kind,
background) at the Pr80 / Pr90 operating points, from the folds' ``fp_causes.csv``
(:mod:`ultradet.evaluation.fp_causes`), and one sentence on whether the claim model has fewer
mimic-caused FP sequences than each other model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from ultradet.evaluation.fp_causes import BACKGROUND, CSV_COLUMNS, CSV_NAME, LOCALISATION, MIMIC_PREFIX
from ultradet.report.inputs import ModelSpec, ReportInputError, fold_files

HEADING = "False positives by cause"
_VALUES = ("fp_detections", "fp_per_minute")


def load_fp_causes(results_dir: str | Path, models: Sequence[str], folds: Sequence[int]) -> tuple[pd.DataFrame, list[Path]]:
    """The folds' ``fp_causes.csv`` as one long frame ``model, fold, recall, cause,
    fp_detections, fp_sequences, fp_per_minute``, for the models whose every fold has the file
    (results evaluated before the file existed have none; the report then leaves them out).

    Returns:
        ``(frame, missing)``: the frame and the missing files' paths.

    Raises:
        ReportInputError: a file lacks a column.
    """
    files = fold_files(results_dir, models, folds, CSV_NAME)
    missing = [p for p in files.values() if not p.is_file()]
    frames = []
    for (model, fold), path in files.items():
        if any(files[(model, k)] in missing for k in folds):
            continue
        frame = pd.read_csv(path)
        absent = [c for c in CSV_COLUMNS if c not in frame.columns]
        if absent:
            raise ReportInputError(f"{path}: missing column(s) {', '.join(absent)} (has {', '.join(frame.columns)})")
        frames.append(frame.assign(model=model, fold=fold))
    columns = ["model", "fold", *CSV_COLUMNS]
    return (pd.concat(frames)[columns] if frames else pd.DataFrame(columns=columns)), missing


def _cause_order(causes) -> list[str]:
    """Localisation, the mimic kinds (alphabetical), background: the evaluation's order."""
    mimics = sorted(c for c in set(causes) if c.startswith(MIMIC_PREFIX))
    return [c for c in (LOCALISATION, *mimics, BACKGROUND) if c in set(causes)]


def summarize_fp_causes(frame: pd.DataFrame, specs: Sequence[ModelSpec]) -> pd.DataFrame:
    """Mean over folds per model, operating point and cause: long frame ``model, display_name,
    recall, cause, fp_detections, fp_per_minute, n`` (FP detections per fold; FP sequences per
    minute; ``n`` folds with a value: a fold without that operating point has NaN rows and is
    left out), in ``specs`` order, then recall, then cause order (localisation, mimic kinds,
    background). Data without a mimic sidecar give no mimic rows."""
    names = {s.name: s.display_name for s in specs}
    kept = frame[frame["model"].isin(names)]
    grouped = kept.groupby(["model", "recall", "cause"])
    stats = grouped[list(_VALUES)].mean()
    stats["n"] = grouped["fp_per_minute"].count()
    stats = stats.reset_index()
    rank, order = {s.name: i for i, s in enumerate(specs)}, _cause_order(kept["cause"])
    stats = stats.assign(
        display_name=stats["model"].map(names), _model=stats["model"].map(rank), _cause=stats["cause"].map(order.index)
    )
    stats = stats.sort_values(["_model", "recall", "_cause"])
    return stats[["model", "display_name", "recall", "cause", *_VALUES, "n"]].reset_index(drop=True)


def _label(cause: str) -> str:
    if cause.startswith(MIMIC_PREFIX):
        return f"Mimic: {cause[len(MIMIC_PREFIX):]}"
    return cause.capitalize()


def to_markdown(summary: pd.DataFrame, value: str, decimals: int) -> str:
    """One table: rows (model, recall), one column per cause and their sum (``All``), cells the
    fold mean of ``value`` (``fp_per_minute`` or ``fp_detections``)."""
    wide = summary.pivot_table(index=["model", "recall"], columns="cause", values=value, sort=False, dropna=False)
    causes = _cause_order(summary["cause"])
    names = dict(zip(summary["model"], summary["display_name"]))
    header = ["Model", "Recall", *(_label(c) for c in causes), "All"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---", "---:"] + ["---:"] * (len(causes) + 1)) + "|"]
    for (model, recall), row in wide.iterrows():
        values = [row.get(c, math.nan) for c in causes]
        cells = [_number(v, decimals) for v in values] + [_number(sum(values), decimals)]
        lines.append("| " + " | ".join([names[model], f"{recall:g}", *cells]) + " |")
    return "\n".join(lines)


def _number(value: float, decimals: int) -> str:
    return "–" if math.isnan(value) else f"{value:.{decimals}f}"


def mimic_per_minute(summary: pd.DataFrame) -> pd.DataFrame:
    """Mimic-caused FP sequences per minute (all mimic kinds), fold mean: rows model, columns
    recall; empty when the data record no mimics."""
    mimic = summary[summary["cause"].str.startswith(MIMIC_PREFIX)]
    return mimic.groupby(["model", "recall"], sort=False)["fp_per_minute"].sum(min_count=1).unstack("recall")


def mimic_sentence(summary: pd.DataFrame, model: str, names: dict[str, str]) -> str:
    """One sentence, made from the numbers: does ``model`` have fewer mimic-caused FP sequences
    per minute (fold mean) than each other model, at each operating point? Means only, no test."""
    table = mimic_per_minute(summary)
    if table.empty:
        return (
            "The data record no lesion mimics (no mimic sidecar, as on CVA-BUS), so mimic-caused false "
            "positives cannot be told from background here."
        )
    if model not in table.index or len(table.index) < 2:
        return ""
    if table.loc[model].isna().any():
        name = names.get(model, model)
        return f"{name} has no operating point at some recall level on any fold, so its mimic-caused FP sequences cannot be compared."
    others = [m for m in table.index if m != model]
    fewer = [r for r in table.columns if all(table.loc[model, r] < table.loc[o, r] for o in others)]
    where = (
        "at both operating points" if len(fewer) == len(table.columns)
        else "at either operating point" if not fewer
        else "only at recall " + " and ".join(f"{r:g}" for r in fewer)
    )
    verb = "does not have" if not fewer else "has"
    detail = "; ".join(
        f"recall {r:g}: " + ", ".join(f"{names.get(m, m)} {table.loc[m, r]:.1f}" for m in [model, *others])
        for r in table.columns
    )
    return (
        f"{names.get(model, model)} {verb} fewer mimic-caused FP sequences per minute than each other model "
        f"{where} (fold means, no test; {detail})."
    )


def section(summary: pd.DataFrame, folds: Sequence[int], sentence: str) -> str:
    """The Markdown section: what is counted, both tables, the sentence."""
    n = len(folds)
    intro = (
        f"Every false positive at each fold's operating points (the score thresholds thr80 / thr90 where "
        f"its PR curve reaches recall 0.8 / 0.9), sorted by what it lies on: Localisation (overlaps a "
        f"lesion box of its frame), Mimic (at least half of it on a duct/vessel or shadow-artefact mimic "
        f"recorded by the generator's mimic sidecar), else Background (ultradet.evaluation.fp_causes). "
        f"Mean over n={n} folds; a sequence counts for the cause of most of its boxes, so the FP-sequence "
        f"columns add up to the table's FP80 / FP90."
    )
    return (
        f"## {HEADING}\n\n{intro}\n\nFP sequences per minute:\n\n{to_markdown(summary, 'fp_per_minute', 1)}\n\n"
        f"FP detections per fold:\n\n{to_markdown(summary, 'fp_detections', 1)}\n\n"
        + (f"**{sentence}**\n\n" if sentence else "")
    )


def summary_entry(summary: pd.DataFrame, model: str | None, sentence: str) -> dict:
    """The ``fp_causes`` entry of summary.json: ``{"recalls", "causes", "units", "claim_model",
    "sentence", "models": {model: {"<recall>": {cause: {"fp_detections", "fp_per_minute",
    "n"}}}}}`` (NaN as None)."""
    models: dict = {}
    for row in summary.itertuples(index=False):
        models.setdefault(row.model, {}).setdefault(f"{row.recall:g}", {})[row.cause] = {
            "fp_detections": _json(row.fp_detections), "fp_per_minute": _json(row.fp_per_minute), "n": int(row.n),
        }
    return {
        "recalls": sorted(float(r) for r in summary["recall"].unique()),
        "causes": _cause_order(summary["cause"]),
        "units": {"fp_detections": "FP detections per fold (fold mean)", "fp_per_minute": "FP sequences per minute (fold mean)"},
        "claim_model": model,
        "sentence": sentence,
        "models": models,
    }


def _json(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
