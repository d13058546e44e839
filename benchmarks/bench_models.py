"""Online inference speed, size and cost of every model experiment, at two frame sizes.

    python benchmarks/bench_models.py [--experiments fasterrcnn basicdet ultradet ...]
        [--sizes 256 948] [--frames 16] [--warmup 8] [--device cpu]
        [--out benchmarks/results/bench_models.json]

For each experiment (the paper's settings: R34-C4, d_model 256, 16 proposals, random weights -
speed does not depend on the weights) and each square frame size (948 x 948 ~ the paper's test
area of 900,000 px), frames of a synthetic video go through ``reset()`` + ``infer_frame`` one by
one, as in online evaluation: ``--warmup`` frames fill the temporal buffers (UltraDet's 16-frame
history and context keyframes) and are not timed, then ``--frames`` frames are timed (a multiple of
``context_step`` = 8, so keyframe spikes are counted at their true rate). FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` in a second pass over the first 8 of those frames (one
keyframe cycle) and averaged per frame; OpenCV's Farneback optical flow (UltraDet's default flow)
runs outside torch and is not in the FLOP count, only in the time (the same holds for FGFA, which
estimates one flow per buffered frame and frame). Prints a table and writes JSON, with every
model's FPS relative to FasterRCNN per size beside the paper's ratios (GPU, table FPS / 49.2).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ultradet.config import load_experiment
from ultradet.modeling import build_model


_EXPERIMENTS = (
    "fasterrcnn",
    "relationnet",
    "fgfa",
    "selsa",
    "mega",
    "basicdet",
    "ultradet",
    "basicdet_poto",
    "ultradet_poto",
    "defcn",
)
# Published FPS / FasterRCNN's 49.2 (paper table, ultradet/report/published.py).
_PAPER_FPS_RATIO = {
    "relationnet": 0.87,
    "fgfa": 0.69,
    "selsa": 0.89,
    "mega": 0.82,
    "basicdet": 0.86,
    "ultradet": 0.62,
    "defcn": 1.04,
}
# One UltraDet keyframe cycle (context_step): the FLOP count includes one keyframe per 8 frames.
_FLOP_FRAMES = 8


def synthetic_video(frames: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    """``frames`` RGB 0..255 ``FloatTensor[3, size, size]`` frames: speckle plus a drifting bright blob."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, size, size, generator=g) * 80
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    video = []
    for t in range(frames):
        cx, cy = size * (0.3 + 0.01 * t), size * 0.5
        blob = 120 * torch.exp(-(((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * (size / 10) ** 2)))
        noise = torch.rand(1, size, size, generator=g) * 30
        video.append((base + blob + noise).clamp(0, 255).expand(3, -1, -1).contiguous())
    return video


def run_video(model, video: list[torch.Tensor], warmup: int, device: torch.device) -> float:
    """Seconds spent on the frames after ``warmup`` (one video, online)."""
    model.reset()
    original = tuple(video[0].shape[-2:])
    elapsed = 0.0
    for t, frame in enumerate(video):
        frame = frame.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.infer_frame(frame, original_size=original)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if t >= warmup:
            elapsed += time.perf_counter() - start
    return elapsed


def count_flops(model, video: list[torch.Tensor], warmup: int, device: torch.device) -> float:
    """Mean torch FLOPs per frame over the frames of ``video`` after ``warmup``."""
    model.reset()
    original = tuple(video[0].shape[-2:])
    for frame in video[:warmup]:
        model.infer_frame(frame.to(device), original_size=original)
    with FlopCounterMode(display=False) as counter:
        for frame in video[warmup:]:
            model.infer_frame(frame.to(device), original_size=original)
    return counter.get_total_flops() / (len(video) - warmup)


def bench(name: str, sizes: list[int], frames: int, warmup: int, device: torch.device) -> dict:
    cfg = load_experiment(name)
    torch.manual_seed(0)
    model = build_model(cfg).to(device).eval()
    row = {"experiment": name, "display_name": cfg.display_name, "params": sum(p.numel() for p in model.parameters())}
    for size in sizes:
        video = synthetic_video(warmup + frames, size)
        seconds = run_video(model, video, warmup, device)
        row[f"fps@{size}"] = frames / seconds
        row[f"gflops@{size}"] = count_flops(model, video[: warmup + _FLOP_FRAMES], warmup, device) / 1e9
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=list(_EXPERIMENTS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 948])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/bench_models.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.experiments:
        rows.append(bench(name, args.sizes, args.frames, args.warmup, device))
        print(f"done {name}", flush=True)
    by_name = {r["experiment"]: r for r in rows}
    ratios = {}
    if "fasterrcnn" in by_name:
        base = by_name["fasterrcnn"]
        ratios = {
            name: {str(s): row[f"fps@{s}"] / base[f"fps@{s}"] for s in args.sizes} for name, row in by_name.items()
        }
    result = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "frames_timed": args.frames,
        "warmup_frames": args.warmup,
        "models": rows,
        "fps_over_fasterrcnn": ratios,
        "paper_fps_over_fasterrcnn": _PAPER_FPS_RATIO,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(_table(rows, args.sizes))
    for name, per_size in ratios.items():
        paper = _PAPER_FPS_RATIO.get(name)
        cells = ", ".join(f"{ratio:.2f} at {size}x{size}" for size, ratio in per_size.items())
        print(f"{name} / FasterRCNN FPS: {cells}" + (f" (paper {paper:.2f})" if paper else ""))
    print(f"-> {args.out}")


def _table(rows: list[dict], sizes: list[int]) -> str:
    header = ["model", "params (M)"] + [f"FPS@{s}" for s in sizes] + [f"GFLOPs@{s}" for s in sizes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["display_name"], f"{r['params'] / 1e6:.2f}"]
        cells += [f"{r[f'fps@{s}']:.2f}" for s in sizes] + [f"{r[f'gflops@{s}']:.1f}" for s in sizes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
