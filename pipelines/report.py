"""DVC stage ``report``: the paper's results table and plots from every (model, fold) result.

Reads from ``--params``:
    models:          [name, ...]   rows, each ``<experiments-dir>/<name>.yaml`` (display_name, group, type)
    folds:           [k, ...]      folds aggregated over
    report.ddof:     int           delta degrees of freedom of the sd over folds (default 1)
    report.out:      path          output folder (default ``reports``)
    tracking.uri, tracking.experiment, tracking.run_key   only with ``--mlflow``

Reads ``<results>/<model>/fold<k>/{metrics.json,pr_curve.csv,fp_curve.csv}`` (all required) and
``<runs>/<model>/fold<k>/losses.csv`` (optional). Writes ``paper_table.{md,tex,csv}``,
``published_table.md``, ``summary.json`` and ``plots/*.png`` into ``report.out``. With
``--mlflow`` the files are also logged to a new run tagged ``ultradet.role=report`` in the
pipeline's experiment.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ultradet.config import read_yaml
from ultradet.errors import run_cli
from ultradet.report import model_specs, write_report


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--experiments-dir", type=Path, default=Path("experiments"))
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
    tracker = _tracker(params) if args.mlflow else None  # fail fast, before any work
    written = write_report(
        model_specs(models, args.experiments_dir), folds, results_dir=args.results, runs_dir=args.runs, out_dir=out, ddof=ddof
    )
    print((out / "paper_table.md").read_text())
    if tracker is not None:
        _log_to_mlflow(tracker, written, out, models=models, folds=folds, ddof=ddof)
    return 0


def _tracker(params: dict):
    from ultradet import experiment_log  # only with --mlflow: the report itself never needs MLflow

    return experiment_log.PipelineTracker.from_params(params.get("tracking") or {})


def _log_to_mlflow(tracker, written: dict[str, Path], out: Path, *, models, folds, ddof) -> None:
    summary = json.loads(written["summary.json"].read_text())
    means = {
        f"{model}/{metric}": stats["mean"]
        for model, entry in summary["models"].items()
        for metric, stats in entry.items()
        if isinstance(stats, dict) and stats["mean"] is not None
    }
    with tracker.report_run(tags={"ultradet.models": ",".join(models)}) as run:
        run.log_config({"report": {"ddof": ddof, "folds": folds, "models": models}})
        run.log_metrics_step(means, step=0)
        run.log_artifacts([p for name, p in written.items() if not name.startswith("plots/")])
        run.log_artifacts([out / "plots"])
        print(f"report logged to MLflow run {run.run_id} ({tracker.uri}, experiment {tracker.experiment})")


if __name__ == "__main__":
    sys.exit(run_cli(main, "report"))
