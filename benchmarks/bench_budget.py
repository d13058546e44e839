"""Where the default `dvc repro` spends its time: seconds per training iteration and per evaluated
frame of every model in params.yaml, at the configuration the train/evaluate stages use, and the
stage times they imply.

    python benchmarks/bench_budget.py [--params params.yaml] [--iters 20] [--frames 60]
        [--out benchmarks/results/bench_budget.json]

For each model of ``models:``: the config is resolved exactly as ``pipelines/train.py`` does
(experiment file + ``train.profile`` + ``train.overrides``, so the pretrained backbone is loaded
when the profile names it: run ``dvc repro pretrain`` first); ``--iters`` training iterations on
fold 0's training videos are timed after 3 untimed ones (data loading included, as in the stage);
then online inference over the first ``--frames`` frames of fold 0's test videos is timed (model
compute only, as the evaluate stage's FPS; video decoding and resizing excluded). Predicted stage
times: ``max_iter x s/iteration`` per fold and ``frames x s/frame`` per fold, times the number of
folds; process start-up, checkpoints and metric computation are not included.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from ultradet.config import load_experiment
from ultradet.data import iter_test_frames, load_videos, split_by_folds
from ultradet.engine.launch import build_trainer


def time_training(cfg, videos, iters: int) -> tuple[float, torch.nn.Module]:
    """Seconds per training iteration (mean over ``iters`` after 3 warm-up iterations), and the
    model (trained that far: inference speed does not depend on the weights)."""
    trainer = build_trainer(cfg, videos, "/tmp/ultradet-bench-budget", progress=False)
    trainer.model.train()
    batches = iter(trainer.data(0))
    for _ in range(3):
        trainer._step([next(batches) for _ in range(trainer.accumulation_steps)])
    start = time.perf_counter()
    for _ in range(iters):
        trainer._step([next(batches) for _ in range(trainer.accumulation_steps)])
    return (time.perf_counter() - start) / iters, trainer.model


@torch.no_grad()
def time_inference(cfg, model, videos, frames: int) -> float:
    """Seconds of model compute per frame over the first ``frames`` test frames (online)."""
    model.eval()
    device = next(model.parameters()).device
    elapsed, count = 0.0, 0
    for video in videos:
        model.reset()
        for frame, image in iter_test_frames(video, fixed_area_test=cfg.input.fixed_area_test, scale_test=cfg.input.scale_test):
            start = time.perf_counter()
            model.infer_frame(image.to(device), (frame.height, frame.width))
            elapsed += time.perf_counter() - start
            count += 1
            if count >= frames:
                return elapsed / count
    return elapsed / max(count, 1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_budget.json"))
    args = p.parse_args(argv)
    params = yaml.safe_load(args.params.read_text())
    data, train, folds = params["data"], params["train"], params["folds"]
    videos = load_videos(data["out"], "trainval", num_folds=data["num_folds"])
    train_videos, test_videos = split_by_folds(videos, [folds[0]])
    frames_per_fold = sum(v.num_frames for v in videos) / data["num_folds"]
    rows = []
    print(f"{'model':<12}{'s/iter':>8}{'iters':>7}{'train/fold s':>14}{'s/frame':>9}{'eval/fold s':>13}{'all folds s':>13}")
    for name in params["models"]:
        cfg = load_experiment(name, profile=train.get("profile"), overrides=train.get("overrides") or {})
        s_iter, model = time_training(cfg, train_videos, args.iters)
        s_frame = time_inference(cfg, model, test_videos, args.frames)
        train_s, eval_s = s_iter * cfg.solver.max_iter, s_frame * frames_per_fold
        rows.append({"model": name, "s_per_iter": s_iter, "max_iter": cfg.solver.max_iter, "train_s_per_fold": train_s,
                     "s_per_frame": s_frame, "eval_s_per_fold": eval_s, "total_s": len(folds) * (train_s + eval_s)})
        r = rows[-1]
        print(f"{name:<12}{s_iter:>8.3f}{cfg.solver.max_iter:>7}{train_s:>14.1f}{s_frame:>9.4f}{eval_s:>13.1f}{r['total_s']:>13.1f}")
    total = sum(r["total_s"] for r in rows)
    print(f"train + evaluate, {len(folds)} folds x {len(rows)} models: {total / 60:.1f} min (model compute only)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "total_s": total, "threads": torch.get_num_threads()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
