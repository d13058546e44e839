"""Write the whole report: paper-style tables (md, tex, csv), the published table, summary.json
and the plots, from the pipeline's per-fold files."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

from ultradet.evaluation.names import MAX_DETS_RECALL
from ultradet.report import ablation, fp_causes, plots
from ultradet.report.claim import claim_baselines, measured_only
from ultradet.report.intervals import CONFIDENCE
from ultradet.report.claim_section import claim_check_section
from ultradet.report.inputs import (
    ModelSpec,
    load_curves,
    load_flow_estimators,
    load_fold_metrics,
    load_largest,
    load_losses,
    load_per_video,
)
from ultradet.report.patients import measured_rows
from ultradet.report.published import ADDED_NOTE, beside_published, mark_added, published_summary
from ultradet.report.table import (
    format_table,
    order_specs,
    summarize,
    summary_dict,
    to_latex,
    to_long_csv,
    to_markdown,
    write_json,
)

PUBLISHED_HEADING = "Published (CVA-BUS, MICCAI 2023)"
BESIDE_HEADING = "Measured beside published"
_BESIDE_NOTE = (
    "Each measured row (this pipeline's data and profile) followed by the published row of the same "
    "model (CVA-BUS, folds 1-3, the authors' GPU); no column is bolded, the sources differ."
)
_PUBLISHED_NOTE = (
    "As published in the UltraDet README: mean ± population sd (ddof=0) over folds 1-3 only "
    "(fold 0 excluded; spec section 5); FPS on the authors' GPU, without sd. "
    "Pr, AP50 and R@16 in %, FP in false-positive sequences per minute."
)


def _sd_name(ddof: int) -> str:
    return {0: "population sd", 1: "sample sd"}.get(ddof, "sd")


def measured_note(
    folds: Sequence[int],
    ddof: int,
    *,
    latex: bool = False,
    delays: Mapping[str, int] | None = None,
    outputs: Mapping[str, int] | None = None,
) -> str:
    """The footnote of the measured table: folds, ddof, units, bolding and how it differs from
    the published aggregation; ``delays`` (display name -> k) names the models that ran with a
    bounded lookahead of k frames, ``outputs`` (display name -> n) those that emitted more than
    16 boxes in some frame (RetinaNet, baselines spec 2.1)."""
    if latex:
        pm, pct, sqrt_n, csv = "$\\pm$", "\\%", "$\\mathrm{sd}/\\sqrt{n}$", "paper\\_table.csv"
    else:
        pm, pct, sqrt_n, csv = "±", "%", "sd/√n", "paper_table.csv"
    fold_list = ", ".join(str(k) for k in folds)
    return (
        f"Mean {pm} {_sd_name(ddof)} (ddof={ddof}) over n={len(folds)} folds ({fold_list}); "
        f"standard errors ({sqrt_n}) are in {csv}. "
        f"Pr, AP50 and R@16 in {pct}, FP in false-positive sequences per minute (30 fps), "
        f"FPS in frames per second of pure model compute on this pipeline's device. "
        f"Bold: best mean per column (FP: lowest). The published table used the population sd "
        f"(ddof=0) over folds 1-3 only, so its {pm} is not directly comparable."
        + "".join(
            f" {name}: bounded lookahead, each output emitted {k} frames late (the wait is not in FPS)."
            for name, k in (delays or {}).items()
        )
        + "".join(
            f" {name}: up to {n} boxes per frame, as the original; AP, Pr and FP count all of them, "
            f"R@{MAX_DETS_RECALL} the {MAX_DETS_RECALL} best of each frame (the original's R@{MAX_DETS_RECALL} counted all)."
            for name, n in (outputs or {}).items()
        )
    )


def flow_note(estimators: dict[str, str], specs: Sequence[ModelSpec]) -> str:
    """One line naming each NTCA model's optical flow estimator (spec 3.7: the original's is a
    learned FlowNetS), or ``""`` when no such model has a resolved config in ``runs/``."""
    names = {s.name: s.display_name for s in specs}
    listed = [f"{names[m]}: {e}" for m, e in estimators.items()]
    return ("Optical flow of NTCA (the original: learned FlowNetS): " + "; ".join(listed) + ".") if listed else ""


def write_report(
    specs: Sequence[ModelSpec],
    folds: Sequence[int],
    *,
    results_dir: str | Path = "results",
    runs_dir: str | Path = "runs",
    out_dir: str | Path = "reports",
    ddof: int = 1,
    claim: tuple[str, Sequence[str] | None] | None = None,
    cell_intervals: bool = False,
) -> dict[str, Path]:
    """Write the report into ``out_dir``.

    Files: ``paper_table.md`` (measured table, footnote, the flow estimator of each NTCA model as
    recorded in ``runs/<model>/fold<k>/config.yaml``, each measured row beside its published
    row under "Measured beside published" (models the published table lacks marked †), then the
    published table under "Published (CVA-BUS, MICCAI 2023)"; before those, "Claim check" and
    "False positives by cause", the fold means of ``fp_causes.csv`` with a sentence on the claim
    model's mimic-caused FP sequences, and "Temporal ablation", each temporal model's metrics with
    and without its temporal aggregation from ``temporal_ablation.json``), ``paper_table.tex``, ``paper_table.csv`` (long:
    ``model, display_name, group, type, metric, mean, sd, se, n, unit, ddof`` for every metric),
    ``published_table.md``, ``summary.json`` and ``plots/{pr_curves,fp_curves,losses,fp_causes}.png``
    (``losses.png`` only for models whose every fold has ``runs/<model>/fold<k>/losses.csv``,
    the FP-by-cause table and ``fp_causes.png`` only for those whose every fold has
    ``results/<model>/fold<k>/fp_causes.csv``; missing ones are warned about).

    Args:
        specs: the models (rows); reordered into the paper's grouping, given order within a group.
        folds: the folds to aggregate over.
        results_dir: holds ``<model>/fold<k>/{metrics.json,pr_curve.csv,fp_curve.csv}``, for
            the claim check's patient level ``per_video.csv`` (optional: without it the fold
            level decides, and the section says which files are missing) and ``fp_causes.csv``
            (optional: the "False positives by cause" section) and ``temporal_ablation.json``
            (optional: the "Temporal ablation" section).
        runs_dir: holds ``<model>/fold<k>/losses.csv``.
        ddof: delta degrees of freedom of the sd over folds (1 = sample sd).
        claim: ``(model, baselines)`` whose claim check (:mod:`ultradet.report.claim_section`:
            over folds and over patients) goes into ``paper_table.md`` ("Claim check") and
            ``summary.json`` (``claim_check``); ``baselines`` None or empty: every other model
            of ``specs``. Skipped when None or when ``model`` or every baseline is not among
            ``specs``. ``model`` is also the one whose mimic-caused FP sequences are compared
            with every other model's.

    Returns:
        ``{name: path}`` of every file written.

    Raises:
        ultradet.report.inputs.ReportInputError: a fold's metrics or curve file is missing
            (all missing paths listed) or malformed.
    """
    specs, out = order_specs(specs), Path(out_dir)
    names = [s.name for s in specs]
    fold_metrics = load_fold_metrics(results_dir, names, folds)
    summary = summarize(fold_metrics, specs, ddof=ddof)
    display = {s.name: s.display_name for s in specs}
    delays = {display[m]: k for m, k in load_largest(results_dir, names, folds, "delay_frames").items()}
    outputs = {
        display[m]: n
        for m, n in load_largest(results_dir, names, folds, "max_detections_per_frame", above=MAX_DETS_RECALL).items()
    }
    pr = load_curves(results_dir, names, folds, "pr_curve.csv", ["recall", "precision"])
    fp = load_curves(results_dir, names, folds, "fp_curve.csv", ["recall", "fp_per_minute"])
    out.mkdir(parents=True, exist_ok=True)

    published_md = f"## {PUBLISHED_HEADING}\n\n{to_markdown(format_table(published_summary()))}\n\n{_PUBLISHED_NOTE}\n"
    marked = mark_added(summary)
    added_note = f" {ADDED_NOTE}" if (marked["display_name"] != summary["display_name"]).any() else ""
    measured_md = to_markdown(format_table(marked))
    intervals_md = _intervals_section(marked, len(folds)) if cell_intervals else ""
    beside_md = f"## {BESIDE_HEADING}\n\n{to_markdown(format_table(beside_published(summary), bold=False))}\n\n{_BESIDE_NOTE}\n\n"
    flow = flow_note(load_flow_estimators(runs_dir, names, folds), specs)
    notes = measured_note(folds, ddof, delays=delays, outputs=outputs) + added_note + (f"\n\n{flow}" if flow else "")
    max_recall = {(m, k): float(curve.recall.max()) if len(curve) else 0.0 for m in names for k, curve in zip(folds, pr[m])}
    measured = measured_only(fold_metrics, max_recall)
    claim_md, claim_json = _claim_check(measured, display, claim, results_dir, folds, max_recall)
    causes_md, causes_json, causes_plot = _fp_causes(results_dir, specs, folds, claim, out / "plots")
    ablation_md, ablation_json = _temporal_ablation(results_dir, specs, folds, measured)
    files = {
        "paper_table.md": f"## Measured\n\n{measured_md}\n\n{notes}\n\n{intervals_md}{claim_md}{causes_md}{ablation_md}{beside_md}{published_md}",
        "paper_table.tex": "% needs \\usepackage{booktabs}\n"
        + to_latex(
            format_table(marked, "latex"),
            measured_note(folds, ddof, latex=True, delays=delays, outputs=outputs) + added_note.replace("†", "$^\\dagger$"),
        ),
        "published_table.md": published_md,
    }
    written = {}
    for name, text in files.items():
        written[name] = out / name
        written[name].write_text(text)
    written["paper_table.csv"] = out / "paper_table.csv"
    to_long_csv(summary, written["paper_table.csv"], ddof=ddof)
    written["summary.json"] = out / "summary.json"
    write_json({**summary_dict(summary, ddof=ddof, folds=folds), **claim_json, **causes_json, **ablation_json}, written["summary.json"])
    written.update(_write_plots(specs, folds, pr, fp, runs_dir, out / "plots"))
    written.update(causes_plot)
    return written


def _intervals_section(summary, num_folds: int) -> str:
    """The "Measured, 95 % intervals" Markdown section: every cell of the measured table as its
    mean and t interval over the folds (``summary``: the long statistics frame)."""
    table = to_markdown(format_table(summary, intervals=True))
    return (
        f"## Measured, {CONFIDENCE:.0%} intervals\n\n{table}\n\n"
        f"Each cell: mean over the folds [two-sided {CONFIDENCE:.0%} t interval of that mean, mean ± "
        f"t(n-1) sd/√n, sample sd] with n={num_folds} folds or fewer where a fold has no value; no interval "
        "from a single fold. Units as in the measured table. With 4 folds t(3) = 3.18, so an "
        "interval spans about 3.2 sd of the folds; the claim check's patient level is the finer test.\n\n"
    )


def _fp_causes(results_dir, specs, folds, claim, plot_dir: Path) -> tuple[str, dict, dict[str, Path]]:
    """The "False positives by cause" Markdown section, the ``fp_causes`` entry of summary.json
    and ``plots/fp_causes.png``, from the folds' ``fp_causes.csv`` (models evaluated before that
    file existed are left out, with a warning); nothing when no model has them."""
    frame, missing = fp_causes.load_fp_causes(results_dir, [s.name for s in specs], folds)
    if missing:
        warnings.warn("no false positives by cause for models without fp_causes.csv: " + ", ".join(map(str, missing)))
    if frame.empty:
        return "", {}, {}
    summary = fp_causes.summarize_fp_causes(frame, specs)
    model = claim[0] if claim else None
    sentence = fp_causes.mimic_sentence(summary, model, {s.name: s.display_name for s in specs}) if model else ""
    plot = plots.plot_fp_causes(summary, specs, plot_dir / "fp_causes.png")
    entry = fp_causes.summary_entry(summary, model, sentence)
    return fp_causes.section(summary, folds, sentence), {"fp_causes": entry}, {"plots/fp_causes.png": plot}


def _temporal_ablation(results_dir, specs, folds, measured) -> tuple[str, dict]:
    """The "Temporal ablation" Markdown section and the ``temporal_ablation`` entry of
    summary.json from the folds' ``temporal_ablation.json`` (``measured``: the default runs'
    long fold metrics, restricted to measurements); nothing when no model of ``specs`` has
    temporal aggregation and the files. Models evaluated before the file existed are left out,
    with a warning."""
    without, change, max_recall, missing = ablation.load_ablation(results_dir, [s.name for s in specs], folds)
    if missing:
        warnings.warn("no temporal ablation for models without temporal_ablation.json: " + ", ".join(map(str, missing)))
    if change.empty:
        return "", {}
    metrics, changes = ablation.summarize_ablation(measured, without, change, specs, max_recall)
    return ablation.section(metrics, changes, folds), {"temporal_ablation": ablation.summary_entry(metrics, changes)}


def _claim_check(fold_metrics, names: dict[str, str], claim, results_dir, folds, max_recall) -> tuple[str, dict]:
    """The "Claim check" Markdown section and the ``claim_check`` entry of summary.json
    (``names``: model -> display name of the report's models; ``max_recall``: (model, fold) ->
    the end of its PR curve)."""
    if claim is None or claim[0] not in names:
        return "", {}
    model, baselines = claim[0], claim_baselines(claim[0], claim[1], list(names))
    if not baselines:
        return "", {}
    per_video, missing = load_per_video(results_dir, [model, *baselines], folds)
    if missing:
        warnings.warn(f"no patient-level claim check: {len(missing)} per_video.csv missing, e.g. {missing[0]}")
    return claim_check_section(fold_metrics, measured_rows(per_video, max_recall), missing, names, model, baselines)


def _write_plots(specs, folds, pr, fp, runs_dir, plot_dir: Path) -> dict[str, Path]:
    written = {
        "plots/pr_curves.png": plots.plot_pr_curves(pr, specs, plot_dir / "pr_curves.png"),
        "plots/fp_curves.png": plots.plot_fp_curves(fp, specs, plot_dir / "fp_curves.png"),
    }
    losses, missing = load_losses(runs_dir, [s.name for s in specs], folds)
    if missing:
        warnings.warn("no loss curve for a model with missing training logs: " + ", ".join(map(str, missing)))
    if losses:
        written["plots/losses.png"] = plots.plot_losses(losses, specs, plot_dir / "losses.png")
    return written
