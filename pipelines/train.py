"""DVC stage ``train@<model>-<fold>``: train one model on every fold but ``--fold``.

Reads ``data``, ``train`` and ``tracking`` from ``--params``. Writes ``runs/<model>/fold<k>/``:
``model_final.pth``, ``config.yaml`` (the resolved config), ``losses.csv`` and
``mlflow_run.json`` (the MLflow child run the evaluate stage logs into). An interrupted run of the
same config resumes from its last checkpoint; any other leftover is cleared first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

from ultradet.config import ExperimentConfig, dump_config, load_experiment
from ultradet.data import load_videos, split_by_folds
from ultradet.engine import LossCSVWriter, last_checkpoint
from ultradet.engine.checkpoint import checkpoint_iteration
from ultradet.engine.launch import build_trainer
from ultradet import experiment_log
from ultradet.errors import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--model", required=True, help="experiment name (experiments/<model>.yaml)")
    p.add_argument("--fold", type=int, required=True, help="test fold held out from training")
    p.add_argument("--out", type=Path, default=None, help="default: runs/<model>/fold<fold>")
    p.add_argument("--experiments-dir", type=Path, default=Path("experiments"))
    return p.parse_args(argv)


def prepare_output(out: Path, cfg: ExperimentConfig) -> None:
    """Keep ``out`` only if it holds an unfinished run of exactly this config (to resume it)."""
    config_file = out / "config.yaml"
    resumable = (
        config_file.is_file()
        and not (out / "model_final.pth").exists()
        and yaml.safe_load(config_file.read_text()) == cfg.model_dump(mode="json")
    )
    if out.exists() and not resumable:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, config_file)


def main(argv=None) -> int:
    args = parse_args(argv)
    params = yaml.safe_load(args.params.read_text())
    data, train = params["data"], params["train"]
    cfg = load_experiment(
        args.model, experiments_dir=args.experiments_dir, profile=train.get("profile"), overrides=train.get("overrides") or {}
    )
    videos = load_videos(data["out"], "trainval", num_folds=data["num_folds"])
    train_videos, _ = split_by_folds(videos, [args.fold])
    out = args.out or Path("runs") / args.model / f"fold{args.fold}"

    tracker = experiment_log.PipelineTracker.from_params(params.get("tracking", {}))  # fails fast if unreachable
    prepare_output(out, cfg)
    print(f"train {args.model} fold {args.fold}: {len(train_videos)} videos, {cfg.solver.max_iter} iterations -> {out}")
    run_file = out / "mlflow_run.json"  # left only by an interrupted run of this config: continue its run
    with tracker.fold_run(model=cfg.name, fold=args.fold, stage="train", cfg=cfg, resume_from=run_file) as run:
        run_file.write_text(json.dumps({"run_id": run.run_id, "tracking_uri": tracker.uri}))
        run.set_tags({"ultradet.flow": cfg.flow_estimator})  # NTCA's flow estimator; None: not set
        losses = LossCSVWriter(out / "losses.csv", start_iter=_resume_iteration(out))
        trainer = build_trainer(cfg, train_videos, out, hooks=[losses, run.loss_hook()])
        final = trainer.train(resume=True)
        run.log_artifacts([out / "config.yaml", out / "losses.csv"])
        run.set_tags({"checkpoint": str(final.resolve())})
    for ckpt in out.glob("model_0*.pth"):  # intermediate checkpoints: only needed to resume
        ckpt.unlink()
    return 0


def _resume_iteration(out: Path) -> int:
    ckpt = last_checkpoint(out)
    return checkpoint_iteration(ckpt) if ckpt else 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "train"))
