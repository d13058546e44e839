"""DVC stage ``evaluate@<model>-<fold>``: online inference of a trained model on its test fold,
then the paper's metrics.

Reads ``data``, ``eval`` and ``tracking`` from ``--params`` and ``runs/<model>/fold<k>/``. Writes
``results/<model>/fold<k>/``: ``predictions.json`` (COCO results), ``timing.json`` (FPS),
``metrics.json`` (with FPS), ``pr_curve.csv``, ``fp_curve.csv``, ``per_video.csv`` (one row per
test video with its patient id, at the fold's Pr80/Pr90 operating points) and ``fp_causes.csv``
(false positives by cause at the Pr80/Pr90 operating points; lesion mimics are told apart where
``data.out`` holds the mimic sidecar ``trainval_mimics.json``, the embedded dataset) and
``temporal_ablation.json`` (a model with temporal aggregation runs the fold a second time with
it switched off, ``model.temporal.aggregate_test: false``: that run's metrics and how much its
top detections differ; a single-frame model writes ``{"temporal_aggregation": false}``); logs
them into the fold's MLflow run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from ultradet import experiment_log, mimic_sidecar
from ultradet.config import ExperimentConfig, load_config, read_yaml
from ultradet.data import load_videos, split_by_folds
from ultradet.engine import timing_dict
from ultradet.engine.launch import load_trained_model, predict_videos
from ultradet.errors import run_cli
from ultradet.layout import fold_dir
from ultradet.evaluation import detection_change, evaluate, fp_by_cause, save_fp_causes, save_metrics, save_temporal_ablation
from ultradet.evaluation.names import FPS_METRIC, PAPER_METRICS

ABLATION_OVERRIDE = {"model.temporal.aggregate_test": False}  # the temporal ablation's switch


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--model", required=True)
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--out", type=Path, default=None, help="default: results/<model>/fold<fold>")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    params = read_yaml(args.params)
    data = params["data"]
    run_dir = fold_dir(args.runs, args.model, args.fold)
    out = args.out or fold_dir("results", args.model, args.fold)
    cfg = load_config(run_dir / "config.yaml")
    videos = load_videos(data["out"], "trainval", num_folds=data["num_folds"])
    _, test_videos = split_by_folds(videos, [args.fold])

    tracker = experiment_log.PipelineTracker.from_params(params.get("tracking", {}))
    model = load_trained_model(cfg, run_dir / "model_final.pth")
    print(f"evaluate {args.model} fold {args.fold}: {len(test_videos)} videos, {sum(v.num_frames for v in test_videos)} frames")
    results, timing = predict_videos(cfg, model, test_videos, warmup_frames=params["eval"]["warmup_frames"])
    gt = json.loads((Path(data["out"]) / "trainval.json").read_text())
    evaluation = evaluate(gt, results, video_ids=[v.video_id for v in test_videos])
    evaluation.metrics[FPS_METRIC] = timing.fps
    evaluation.metrics["delay_frames"] = timing.delay_frames  # bounded lookahead: outputs this many frames late
    sidecar = mimic_sidecar.sidecar_path(data["out"], "trainval")  # in data.out: a dep of this stage
    mimics = mimic_sidecar.read(sidecar) if sidecar.is_file() else None
    causes = fp_by_cause(gt, results, evaluation.metrics, mimics=mimics, video_ids=[v.video_id for v in test_videos])

    ablation = temporal_ablation(run_dir, model, test_videos, gt, results, params["eval"]["warmup_frames"])

    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(results))
    (out / "timing.json").write_text(json.dumps(timing_dict(timing), indent=2))
    saved = save_metrics(evaluation, out, patients={v.video_id: v.patient_id for v in test_videos})
    save_fp_causes(causes, out)
    ablation_file = save_temporal_ablation(out, *ablation)
    with tracker.fold_run(model=cfg.name, fold=args.fold, stage="evaluate", cfg=cfg, resume_from=run_dir / "mlflow_run.json") as run:
        run.log_eval_metrics(evaluation.metrics)
        if ablation[0] is not None:
            run.log_eval_metrics({f"temporal_ablation/{k}": v for k, v in {**ablation[0], **ablation[1]}.items()})
        run.log_artifacts([out / "timing.json", *saved.values(), out / "fp_causes.csv", ablation_file])
    print(json.dumps({k: evaluation.metrics[k] for k in PAPER_METRICS}, indent=2))
    return 0


def temporal_ablation(run_dir: Path, model, videos, gt: dict, results: list[dict], warmup_frames: int):
    """The test videos run again with the model's temporal aggregation switched off (same
    weights; :class:`ultradet.config.TemporalConfig`), compared with the default run's
    ``results``. Returns ``(metrics, change, max_recall)`` for
    :func:`ultradet.evaluation.save_temporal_ablation`; ``(None, None, None)`` for a model
    without temporal aggregation (the switch would change nothing)."""
    if not model.temporal_aggregation:
        return None, None, None
    cfg: ExperimentConfig = load_config(run_dir / "config.yaml", overrides=ABLATION_OVERRIDE)
    ablated = load_trained_model(cfg, run_dir / "model_final.pth")
    print(f"temporal ablation: {cfg.name} with {', '.join(f'{k}={v}' for k, v in ABLATION_OVERRIDE.items())}")
    ablated_results, timing = predict_videos(cfg, ablated, videos, warmup_frames=warmup_frames)
    video_ids = [v.video_id for v in videos]
    evaluation = evaluate(gt, ablated_results, video_ids=video_ids)
    evaluation.metrics[FPS_METRIC] = timing.fps  # what the aggregation costs, beside metrics.json's FPS
    recall = evaluation.curves["pr"]["recall"]
    change = detection_change(gt, results, ablated_results, video_ids=video_ids)
    return evaluation.metrics, change, float(recall.max()) if len(recall) else 0.0


if __name__ == "__main__":
    sys.exit(run_cli(main, "evaluate"))
