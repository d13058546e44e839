"""DVC stage ``train@<model>-<fold>``: train one model on every fold but ``--fold``.

Reads ``data``, ``train`` and ``tracking`` from ``--params``. Writes ``runs/<model>/fold<k>/``:
``model_final.pth``, ``config.yaml`` (the resolved config), ``losses.csv`` and
``mlflow_run.json`` (the MLflow child run the evaluate stage logs into). The trained detector is
also logged into that run as an MLflow model (``runs:/<run_id>/model``,
``ultradet.experiment_log.model``). An interrupted run of the same config resumes from its last
checkpoint that loads (a truncated newer one is skipped with a warning naming it); any other
leftover is cleared first.

With ``train.num_workers`` > 1 the model trains data-parallel on Ray Train (``train.use_gpu``,
``train.ray_address``); only rank 0 writes checkpoints, ``losses.csv`` and MLflow metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow import MlflowClient

from ultradet.config import ExperimentConfig, dump_config, load_experiment
from ultradet.data import load_videos, split_by_folds
from ultradet.data.records import VideoRecord
from ultradet.engine import LossCSVWriter
from ultradet.engine.checkpoint import resume_point
from ultradet.engine.distributed import WorkerGroup
from ultradet.engine.launch import build_trainer
from ultradet.engine.ray_launch import DataParallelOptions, run_data_parallel, worker_device
from ultradet import experiment_log
from ultradet.experiment_log.model import log_detector
from ultradet.errors import run_cli
from ultradet.layout import fold_dir, fold_run_name


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


@dataclass(frozen=True)
class TrainJob:
    """What every worker needs (picklable). Ray Train starts each worker in a folder of its own:
    ``workdir`` is the stage's working directory, against which the config's relative paths
    (``model.weights``, the dataset's frames) resolve; ``out`` and ``tracking_uri`` are absolute."""

    workdir: Path
    cfg: ExperimentConfig
    videos: list[VideoRecord]
    out: Path
    tracking_uri: str
    run_id: str
    start_iter: int


def train_worker(job: TrainJob) -> None:
    """Train ``job`` in this process, alone or as one Ray Train worker; rank 0 logs the losses
    to ``losses.csv`` and the fold's MLflow run."""
    os.chdir(job.workdir)
    group = WorkerGroup.current()
    hooks = []
    if group.is_main:
        run = experiment_log.TrackedRun(MlflowClient(tracking_uri=job.tracking_uri), job.run_id)
        hooks = [LossCSVWriter(job.out / "losses.csv", start_iter=job.start_iter), experiment_log.MLflowHook(run)]
    device = worker_device() if group.world_size > 1 else None
    build_trainer(job.cfg, job.videos, job.out, hooks=hooks, device=device).train(resume=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    params = yaml.safe_load(args.params.read_text())
    data, train = params["data"], params["train"]
    cfg = load_experiment(
        args.model, experiments_dir=args.experiments_dir, profile=train.get("profile"), overrides=train.get("overrides") or {}
    )
    parallel = DataParallelOptions.from_params(train)
    accumulation_steps = parallel.check(cfg)  # fails before anything starts
    videos = load_videos(data["out"], "trainval", num_folds=data["num_folds"])
    train_videos, _ = split_by_folds(videos, [args.fold])
    out = args.out or fold_dir("runs", args.model, args.fold)

    prepare_output(out, cfg)
    start_iter = _resume_iteration(out)  # no checkpoint that loads: fails here, before tracking and training
    tracker = experiment_log.PipelineTracker.from_params(params.get("tracking", {}))  # fails fast if unreachable
    print(
        f"train {args.model} fold {args.fold}: {len(train_videos)} videos, {cfg.solver.max_iter} iterations of "
        f"{cfg.solver.clips_per_batch} clips ({parallel.num_workers} workers x {cfg.solver.clips_per_worker} clips x "
        f"{accumulation_steps} accumulation steps) -> {out}"
    )
    run_file = out / "mlflow_run.json"  # left only by an interrupted run of this config: continue its run
    with tracker.fold_run(model=cfg.name, fold=args.fold, stage="train", cfg=cfg, resume_from=run_file) as run:
        run_file.write_text(json.dumps({"run_id": run.run_id, "tracking_uri": tracker.uri}))
        run.set_tags(
            {
                "ultradet.flow": cfg.flow_estimator,  # NTCA's flow estimator; None: not set
                "ultradet.num_workers": parallel.num_workers,
                "ultradet.accumulation_steps": accumulation_steps,
            }
        )
        job = TrainJob(
            Path.cwd(), cfg, train_videos, out.resolve(), experiment_log.absolute_uri(tracker.uri), run.run_id, start_iter,
        )
        if parallel.num_workers == 1:
            train_worker(job)
        else:
            run_data_parallel(train_worker, job, parallel, name=fold_run_name(args.model, args.fold))
        final = out / "model_final.pth"
        run.log_artifacts([out / "config.yaml", out / "losses.csv"])
        log_detector(tracker.client, run.run_id, out, fold=args.fold)  # runs:/<run_id>/model
        run.set_tags({"checkpoint": str(final.resolve())})
    for ckpt in out.glob("model_0*.pth"):  # intermediate checkpoints: only needed to resume
        ckpt.unlink()
    return 0


def _resume_iteration(out: Path) -> int:
    """The iteration the trainer will resume from: that of the newest checkpoint that loads
    (:func:`resume_point` warns about a truncated newer one and fails when none loads)."""
    found = resume_point(out)
    return found[1]["iteration"] if found else 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "train"))
