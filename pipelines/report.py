"""DVC stage ``report``: the paper's results table and plots from every (model, fold) result.

Reads from ``--params``:
    models:          [name, ...]   rows, each named by the display_name, group and type it was trained with
    folds:           [k, ...]      folds aggregated over
    report.ddof:     int           delta degrees of freedom of the sd over folds (default 1)
    report.out:      path          output folder (default ``reports``)
    report.claim:    {model, baselines}   the claim check's model and baselines (optional; baselines
                     null or absent: every other model of ``models``)
    report.cell_intervals: bool   also the measured table with a 95 % t interval in every cell
                     (optional, default false)
    tracking.uri, tracking.experiment, tracking.run_key   only with ``--mlflow``

Reads ``<results>/<model>/fold<k>/{metrics.json,pr_curve.csv,fp_curve.csv}`` (all required),
``per_video.csv`` (the claim check's patient level; without it the fold level decides),
``<results>/<model>/fold<k>/fp_causes.csv`` (optional: the "False positives by cause" section),
``<runs>/<model>/fold<first k>/config.yaml`` (required: the row's names) and
``<runs>/<model>/fold<k>/losses.csv`` (optional): pipeline outputs only, never ``experiments/``,
so that a new experiment file (a search's best config) leaves the report up to date. Writes ``paper_table.{md,tex,csv}``,
``published_table.md``, ``summary.json`` and ``plots/*.png`` into ``report.out``. With
``--mlflow`` the files are also logged to a new run tagged ``ultradet.role=report`` in the
pipeline's experiment, and each model's parent run (of its resolved config,
``<runs>/<model>/fold<k>/config.yaml``) gets the table's fold statistics as metrics
(``AP50``, ``AP50_sd``, ``AP50_se``, ``AP50_n``, ...), so the MLflow UI's compare view of the
parents lines the models up as the table does.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from ultradet.config import ExperimentConfig, load_config, read_yaml
from ultradet.errors import run_cli
from ultradet.layout import fold_dir
from ultradet.report import trained_model_specs, write_report


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--mlflow", action="store_true", help="also log the report to MLflow")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    params = read_yaml(args.params)
    report = params.get("report") or {}
    models, folds = list(params["models"]), [int(k) for k in params["folds"]]
    ddof, out = int(report.get("ddof", 1)), Path(report.get("out", "reports"))
    claim = (report["claim"]["model"], report["claim"].get("baselines")) if report.get("claim") else None
    tracker = _tracker(params) if args.mlflow else None  # fail fast, before any work
    written = write_report(
        trained_model_specs(models, args.runs, folds[0]), folds, results_dir=args.results, runs_dir=args.runs, out_dir=out, ddof=ddof,
        claim=claim, cell_intervals=bool(report.get("cell_intervals", False)),
    )
    print((out / "paper_table.md").read_text())
    if tracker is not None:
        _log_to_mlflow(tracker, written, out, runs=args.runs, models=models, folds=folds, ddof=ddof)
    return 0


def _tracker(params: dict):
    from ultradet import experiment_log  # only with --mlflow: the report itself never needs MLflow

    return experiment_log.PipelineTracker.from_params(params.get("tracking") or {})


def _claim_metrics(check: dict) -> dict[str, float]:
    """MLflow metrics of the claim check: ``claim/<baseline>/<metric>_<stat>`` over folds and
    ``claim_patients/<baseline>/<metric>_<stat>`` over patients (None values left out)."""
    stats = (("diff_mean", "mean_diff"), ("ci_low", "ci_low"), ("ci_high", "ci_high"), ("mdd", "mdd"), ("p", "p_value"))
    levels = (("claim", check.get("comparisons", [])), ("claim_patients", check.get("patient_level", {}).get("comparisons", [])))
    return {
        f"{prefix}/{c['baseline']}/{c['metric']}_{stat}": c[key]
        for prefix, comparisons in levels
        for c in comparisons
        for stat, key in stats
        if c.get(key) is not None
    }


def _log_to_mlflow(tracker, written: dict[str, Path], out: Path, *, runs: Path, models, folds, ddof) -> None:
    summary = json.loads(written["summary.json"].read_text())
    check = summary.get("claim_check", {})
    claim = _claim_metrics(check)
    with tracker.report_run(tags={"ultradet.models": ",".join(models)}) as run:
        run.log_config({"report": {"ddof": ddof, "folds": folds, "models": models}})
        if claim:
            run.log_metrics_step(claim, step=0)
            deciding = check["patient_level"]["sentence"] if check["decides"] == "patient" else check["sentence"]
            run.set_tags({"ultradet.claim_check": f"{check['decision']} {deciding}"[:5000]})
        run.log_artifacts([p for name, p in written.items() if not name.startswith("plots/")])
        run.log_artifacts([out / "plots"])
        print(f"report logged to MLflow run {run.run_id} ({tracker.uri}, experiment {tracker.experiment})")
    for model, entry in summary["models"].items():
        cfg = _resolved_config(runs, model, folds)
        if cfg is not None:
            stats = {metric: value for metric, value in entry.items() if isinstance(value, dict)}
            parent = tracker.log_fold_summary(model, cfg, stats)
            print(f"fold statistics of {model} logged to its parent run {parent}")


def _resolved_config(runs: Path, model: str, folds) -> ExperimentConfig | None:
    """The config every fold of ``model`` was trained with, or None (with a warning) when a
    fold's ``config.yaml`` is missing or the folds disagree: then no parent is the right one."""
    files = [fold_dir(runs, model, k) / "config.yaml" for k in folds]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        warnings.warn(f"{model}: no resolved config ({', '.join(missing)}); its MLflow parent run is not updated")
        return None
    configs = [load_config(f) for f in files]
    if any(c != configs[0] for c in configs[1:]):
        warnings.warn(f"{model}: the folds were trained with different configs; its MLflow parent run is not updated")
        return None
    return configs[0]


if __name__ == "__main__":
    sys.exit(run_cli(main, "report"))
