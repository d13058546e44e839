"""Wall time of the full metric suite (`ultradet.evaluation.evaluate`) at CVA-BUS scale.

    python benchmarks/bench_metrics.py [--videos 188] [--frames 25000] [--boxes 16] [--repeats 3]
                                       [--worst-case] [--out benchmarks/results/bench_metrics.json]

Synthetic but plausible inputs: one lesion per video drifting smoothly across 512 x 512 frames
(absent from ~10% of frames), and 16 detections per frame like a 16-proposal detector: a jittered
hit on the lesion (usually high score, sometimes missed), a few persistent false-positive
"tracks" that drift slowly (mid scores), and random low-score clutter. Times `evaluate` end to
end (JSON-like dicts in, all metrics and curves out) and writes the best of `--repeats` runs.
`--worst-case` replaces every score by a uniform random number: the detector is useless, the
recall-0.95 threshold keeps almost every box, and FP linking enumerates ~30M box pairs.
Target: < 5 s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from ultradet.evaluation import evaluate

SIZE = 512.0


def _video_lengths(rng: np.random.Generator, videos: int, frames: int) -> np.ndarray:
    raw = rng.uniform(0.4, 1.6, videos)
    lengths = np.maximum(8, np.round(raw / raw.sum() * frames)).astype(int)
    lengths[-1] += frames - lengths.sum()  # exact total
    return lengths


def _random_walk(rng: np.random.Generator, n: int, step: float, lo: float, hi: float) -> np.ndarray:
    return np.clip(rng.uniform(lo, hi) + np.cumsum(rng.normal(0, step, n)), lo, hi)


def synthetic_video(rng: np.random.Generator, n: int, boxes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt (n, 4) xyxy with NaN rows for frames without lesion, dets (n, boxes, 4) xyxy, scores (n, boxes))."""
    size = rng.uniform(40, 120)
    cx, cy = _random_walk(rng, n, 2.0, 80, SIZE - 80), _random_walk(rng, n, 2.0, 80, SIZE - 80)
    gt = np.stack([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], axis=1)
    gt[rng.random(n) < 0.1] = np.nan  # lesion out of view
    dets = np.empty((n, boxes, 4))
    scores = np.empty((n, boxes))
    # slot 0: the lesion hit (jittered), missed or mislocalised now and then
    jitter = rng.normal(0, 0.08 * size, (n, 4))
    hit = np.where(np.isnan(gt), np.array([200, 200, 260, 260.0]), gt) + jitter
    dets[:, 0] = hit
    scores[:, 0] = np.where(np.isnan(gt[:, 0]), rng.uniform(0.05, 0.5, n), rng.beta(8, 2, n))
    # slots 1-3: persistent FP tracks (drifting mimics)
    for k in range(1, 4):
        fx, fy = _random_walk(rng, n, 3.0, 40, SIZE - 40), _random_walk(rng, n, 3.0, 40, SIZE - 40)
        s = rng.uniform(20, 80)
        dets[:, k] = np.stack([fx - s / 2, fy - s / 2, fx + s / 2, fy + s / 2], axis=1) + rng.normal(0, 2, (n, 4))
        scores[:, k] = np.clip(rng.normal(rng.uniform(0.1, 0.45), 0.1, n), 0.01, 0.99)
    # remaining slots: clutter
    xy = rng.uniform(0, SIZE - 30, (n, boxes - 4, 2))
    wh = rng.uniform(15, 100, (n, boxes - 4, 2))
    dets[:, 4:] = np.concatenate([xy, xy + wh], axis=2)
    scores[:, 4:] = rng.beta(1, 8, (n, boxes - 4))
    return gt, np.clip(dets, 0, SIZE), scores


def synthetic_inputs(videos: int, frames: int, boxes: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """A COCO-VID ground truth dict and a COCO results list of the given scale."""
    rng = np.random.default_rng(seed)
    gt = {"videos": [], "images": [], "annotations": [], "categories": [{"id": 1, "name": "lesion"}]}
    results: list[dict] = []
    image_id = 0
    for vid, n in enumerate(_video_lengths(rng, videos, frames), start=1):
        gt["videos"].append({"id": vid, "name": f"benign/{vid:016x}"})
        gboxes, dets, scores = synthetic_video(rng, int(n), boxes)
        for f in range(int(n)):
            image_id += 1
            gt["images"].append({"id": image_id, "video_id": vid, "frame_id": f, "height": 512, "width": 512,
                                 "file_name": f"{f:06d}.png"})
            if not np.isnan(gboxes[f, 0]):
                x1, y1, x2, y2 = gboxes[f].tolist()
                gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id, "video_id": vid,
                                          "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "instance_id": vid,
                                          "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
            for box, score in zip(dets[f].tolist(), scores[f].tolist()):
                results.append({"image_id": image_id, "category_id": 1,
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "score": score})
    return gt, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=188)
    parser.add_argument("--frames", type=int, default=25000)
    parser.add_argument("--boxes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worst-case", action="store_true", help="uniformly random scores")
    parser.add_argument("--out", default="benchmarks/results/bench_metrics.json")
    args = parser.parse_args()
    gt, results = synthetic_inputs(args.videos, args.frames, args.boxes)
    if args.worst_case:
        for r, score in zip(results, np.random.default_rng(1).random(len(results)).tolist()):
            r["score"] = score
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        metrics = evaluate(gt, results).metrics
        times.append(time.perf_counter() - start)
    seconds = min(times)
    result = {"videos": args.videos, "worst_case": args.worst_case, "frames": metrics["num_frames"], "detections": metrics["num_detections"],
              "seconds": round(seconds, 3), "all_seconds": [round(t, 3) for t in times],
              "machine": platform.processor() or platform.machine(),
              "metrics": {k: round(float(v), 4) for k, v in metrics.items()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"evaluate: {seconds:.2f} s for {metrics['num_videos']} videos, {metrics['num_frames']} frames, "
          f"{metrics['num_detections']} detections (runs: {', '.join(f'{t:.2f}' for t in times)}) -> {args.out}")
    print("  " + ", ".join(f"{k}={float(metrics[k]):.3f}" for k in ("AP50", "mAP", "Pr80", "Pr90", "FP80", "FP90", "R16")))


if __name__ == "__main__":
    main()
