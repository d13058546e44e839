"""The report's "Claim check": the fold-level comparison (the paper's protocol,
:mod:`ultradet.report.claim`), the patient-level one (:mod:`ultradet.report.patients`), which of
the two decides, and the minimum detectable difference of each design
(:mod:`ultradet.report.power`), as Markdown for ``paper_table.md`` and the ``claim_check`` entry
of ``summary.json``.

The patient level decides when it pairs more patients than the fold level pairs folds: both
estimate the same mean difference, and the design with more independent pairs detects smaller
differences (its MDD is smaller for the same spread). Otherwise, or without ``per_video.csv``
files, the fold level decides.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from ultradet.report.claim import (
    CONFIDENCE,
    PairedComparison,
    check_claim,
    claim_sentence,
    comparisons_dict,
    format_difference,
    per_fold_table,
)
from ultradet.report.patients import (
    RESAMPLES,
    SEED,
    PatientComparison,
    compare_patients,
    format_p,
    patient_comparisons_dict,
    patient_sentence,
)
from ultradet.report.power import POWER, mdd_factor

FOLD_METHOD = "paired differences over folds (model - baseline), mean and two-sided 95% t interval"
PATIENT_METHOD = (
    "paired differences over patients pooled across folds (model - baseline, each model at its own fold "
    "threshold; a patient's FP sequences per minute and recall pooled over its videos), mean, two-sided 95% "
    "percentile bootstrap interval resampling patients within folds, Wilcoxon signed-rank p"
)


def claim_check_section(
    fold_metrics: pd.DataFrame,
    per_video: pd.DataFrame,
    missing: Sequence[Path],
    names: dict[str, str],
    model: str,
    baselines: Sequence[str],
) -> tuple[str, dict]:
    """The "Claim check" Markdown section and the ``claim_check`` entry of summary.json.

    Args:
        fold_metrics: long ``model, fold, metric, value``, masked by ``claim.measured_only``.
        per_video: the models' per-video rows (``inputs.load_per_video``), masked by
            ``patients.measured_rows``; ignored when ``missing`` is not empty.
        missing: ``per_video.csv`` files that are missing (then no patient-level comparison).
        names: model -> display name of the report's models.
        model, baselines: the model whose claim is checked and the models it is compared with.
    """
    folds = check_claim(fold_metrics, model, baselines)
    patients = [] if missing else compare_patients(per_video, model, baselines)
    decides, decision = decide(folds, patients, missing, names)
    fold_text = claim_sentence(folds, names[model], names)
    patient_text = patient_sentence(patients, names[model], names) if patients else ""
    md = "\n\n".join([
        "## Claim check",
        f"UltraDet's claim: fewer false-positive sequences and higher precision at equal recall than "
        f"{', '.join(names[b] for b in baselines)}. Per fold (Pr in %, FP per minute; nan where the fold's PR "
        f"curve never reaches that recall, so the value would be the evaluator's fallback and the fold is left "
        f"out of that comparison):",
        per_fold_table(fold_metrics, [model, *baselines], names).to_markdown(),
        f"**Over folds** (the paper's protocol). {_FOLD_NOTE}",
        fold_table(folds, names).to_markdown(index=False),
        f"**{fold_text}**",
        *(_patient_md(patients, names, patient_text) if patients else []),
        f"**{decision}**",
    ]) + "\n\n"
    entry = {
        "model": model,
        "baselines": list(baselines),
        "method": FOLD_METHOD,
        "comparisons": comparisons_dict(folds),
        "sentence": fold_text,
        "patient_level": _patient_entry(patients, patient_text, missing),
        "decides": decides,
        "decision": decision,
    }
    return md, {"claim_check": entry}


_FOLD_NOTE = (
    f"Differences model - baseline, mean and {CONFIDENCE:.0%} t interval over the folds; MDD: minimum "
    f"detectable difference at {POWER:.0%} power and a two-sided 5% level, {mdd_factor():.2f} sd/√n of the "
    f"paired differences."
)
_PATIENT_NOTE = (
    f"The folds' test videos pooled and paired across models, each model at its own fold threshold; one "
    f"value per patient pooled over its videos (FP sequences per minute; recall, a fraction, in points). "
    f"Mean difference model - baseline with a {CONFIDENCE:.0%} percentile bootstrap interval ({RESAMPLES:,} "
    f"resamples of the patients within their folds, seed {SEED}), Wilcoxon signed-rank p, patients better / "
    f"worse / tied for the model, and the MDD ({mdd_factor():.2f} sd/√n). Verdict better or worse only where the "
    f"interval excludes 0 and p < {1 - CONFIDENCE:.2f}. Each model's threshold sets its recall "
    f"over a fold at about 0.8 (0.9); the recall rows show how its detections spread over the patients."
)


def _patient_md(patients: Sequence[PatientComparison], names: dict[str, str], sentence: str) -> list[str]:
    return [f"**Over patients.** {_PATIENT_NOTE}", patient_table(patients, names).to_markdown(index=False), f"**{sentence}**"]


def _patient_entry(patients: Sequence[PatientComparison], sentence: str, missing: Sequence[Path]) -> dict:
    if not patients:
        return {"method": PATIENT_METHOD, "comparisons": [], "missing": [str(p) for p in missing]}
    return {
        "method": PATIENT_METHOD,
        "resamples": RESAMPLES,
        "seed": SEED,
        "comparisons": patient_comparisons_dict(patients),
        "sentence": sentence,
    }


def _interval(metric: str, low: float, high: float) -> str:
    return f"[{format_difference(metric, low)}, {format_difference(metric, high)}]"


def _size(metric: str, value: float) -> str:
    return format_difference(metric, value).lstrip("+") if math.isfinite(value) else "n/a"


def fold_table(comparisons: Sequence[PairedComparison], names: dict[str, str]) -> pd.DataFrame:
    """One row per fold-level comparison, formatted for Markdown."""
    return pd.DataFrame([
        {
            "Baseline": names.get(c.baseline, c.baseline), "Metric": c.metric, "n folds": c.n,
            "Mean difference": format_difference(c.metric, c.mean_diff),
            f"{CONFIDENCE:.0%} t interval": _interval(c.metric, c.ci_low, c.ci_high),
            "MDD": _size(c.metric, c.mdd), "Verdict": c.verdict,
        }
        for c in comparisons
    ])


def patient_table(comparisons: Sequence[PatientComparison], names: dict[str, str]) -> pd.DataFrame:
    """One row per patient-level comparison, formatted for Markdown."""
    return pd.DataFrame([
        {
            "Baseline": names.get(c.baseline, c.baseline), "Metric": c.metric, "n patients": c.n,
            "Mean difference": format_difference(c.metric, c.mean_diff),
            f"{CONFIDENCE:.0%} bootstrap interval": _interval(c.metric, c.ci_low, c.ci_high),
            "Wilcoxon p": format_p(c.p_value), "Better / worse / tied": f"{c.better} / {c.worse} / {c.tied}",
            "MDD": _size(c.metric, c.mdd), "Verdict": c.verdict,
        }
        for c in comparisons
    ])


def decide(
    folds: Sequence[PairedComparison], patients: Sequence[PatientComparison], missing: Sequence[Path], names: dict[str, str]
) -> tuple[str, str]:
    """``("patient" | "fold", the sentence saying which level decides and why)``."""
    n_folds = max((c.n for c in folds), default=0)
    if missing:
        return "fold", (
            f"The fold level decides: {len(missing)} per_video.csv file(s) are missing "
            f"(e.g. {missing[0]}), so there is no patient-level comparison."
        )
    n_patients = max((c.n for c in patients if c.metric.startswith("FP")), default=0)
    if n_patients <= n_folds:
        return "fold", f"The fold level decides: the patient level pairs n={n_patients} patients, no more than the n={n_folds} folds."
    return "patient", (
        f"The patient level decides: it pairs n={n_patients} patients against n={n_folds} folds, so it detects "
        f"smaller differences (MDD at {POWER:.0%} power, over baselines: {_mdd_ranges(folds, patients)})."
    )


def _mdd_ranges(folds: Sequence[PairedComparison], patients: Sequence[PatientComparison]) -> str:
    """``FP80 2.1-3.0/min over patients against 8.0-12.5/min over folds; FP90 ...``."""
    parts = []
    for metric in dict.fromkeys(c.metric for c in patients if c.metric.startswith("FP")):
        spans = [_span(metric, [c.mdd for c in group if c.metric == metric]) for group in (patients, folds)]
        parts.append(f"{metric} {spans[0]} over patients against {spans[1]} over folds")
    return "; ".join(parts)


def _span(metric: str, values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "n/a"
    low, high = _size(metric, min(finite)), _size(metric, max(finite))
    return low if low == high else f"{low.removesuffix('/min')}-{high}"
