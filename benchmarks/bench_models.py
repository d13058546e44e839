"""Online inference speed, size and cost of every model experiment, at several frame sizes, and
optionally against the code of another git revision, side by side in one run.

    python benchmarks/bench_models.py [--experiments fasterrcnn basicdet ultradet ...]
        [--profile experiments/profiles/cpu.yaml] [--sizes 160 256] [--frames 16] [--warmup 8]
        [--repeats 5] [--threads 1] [--baseline-rev 65ca231] [--device cpu]
        [--out benchmarks/results/bench_models.json]

Models: without ``--profile`` the paper's settings (R34-C4, d_model 256, 16 proposals); with a
profile, its shapes (e.g. the CPU profile: R18, d_model 128, 160 px test frames) with random
weights in the profile's places (``bench_train.load_offline``): speed does not depend on the
weights. For each experiment and square frame size (948 x 948 ~ the paper's test area of 900,000
px), frames of a synthetic video go through ``reset()`` + ``infer_frame`` one by one, as in
online evaluation: ``--warmup`` frames fill the temporal buffers (UltraDet's history and context
keyframes) and are not timed, then ``--frames`` frames are timed (a multiple of UltraDet's
``context_step``, so keyframe spikes count at their true rate).

Each repeat runs every experiment and size in a fresh worker process of the current code and,
with ``--baseline-rev``, then in one of that revision's code (``git archive <rev> ultradet``),
so both see the same machine load; inside a run the models of one size run back to back. The
table gives the median FPS over repeats ("before" = the revision, "after" = the working tree),
each model's FPS relative to FasterRCNN per size (the median over repeats of the ratio within a
run) beside the paper's ratios (GPU, table FPS / 49.2), and the largest difference between the
two codes' detections on the benchmark clip (same seed, same weights). FLOPs are counted once, on
the current code, with ``torch.utils.flop_counter.FlopCounterMode`` over the first 8 timed
frames (one keyframe cycle of the paper profile); OpenCV's Farneback flow (UltraDet's default)
runs outside torch and is not in the FLOP count, only in the time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

_HERE = Path(__file__).resolve().parent
# Every model experiment (a search's tuned configs live in experiments/tuned/), FasterRCNN first:
# the ratios are to it.
_EXPERIMENTS = ["fasterrcnn"] + sorted(p.stem for p in (_HERE.parent / "experiments").glob("*.yaml") if p.stem != "fasterrcnn")


def paper_fps_ratios(display_names: dict[str, str]) -> dict[str, float]:
    """Per experiment, the published FPS over FasterRCNN's (GPU, paper table,
    ``ultradet.report.published``), for the experiments whose display name has a published row;
    ``display_names``: experiment name -> display name."""
    from ultradet.report.published import published_summary

    published = published_summary()
    fps = published[published["metric"] == "FPS"].set_index("display_name")["mean"]
    return {name: float(fps[shown] / fps["FasterRCNN"]) for name, shown in display_names.items() if shown in fps.index}


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


def run_video(model, video: list[torch.Tensor], warmup: int, device: torch.device) -> tuple[float, list[dict]]:
    """Seconds spent on the frames after ``warmup`` (one video, online, CUDA synchronised around
    every frame), and every frame's detections (on the CPU)."""
    model.reset()
    original = tuple(video[0].shape[-2:])
    elapsed, outputs = 0.0, []
    for t, frame in enumerate(video):
        frame = frame.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        output = model.infer_frame(frame, original_size=original)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if t >= warmup:
            elapsed += time.perf_counter() - start
        outputs.append(None if output is None else {k: v.cpu() for k, v in output.items()})
    return elapsed, outputs


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


def build(name: str, profile: str | None, weights_dir: str):
    """``name``'s config (the paper's defaults, or ``profile`` with random weights in its places)
    and its model, seeded."""
    from ultradet.config import load_experiment
    from ultradet.modeling import build_model

    if profile is None:
        cfg = load_experiment(name, experiments_dir=_HERE.parent / "experiments")
    else:
        sys.path.insert(0, str(_HERE))
        from bench_train import load_offline

        cfg = load_offline(name, profile, weights_dir)
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def measure(args: argparse.Namespace) -> list[dict]:
    """One repeat in this process: every experiment at every size (``--worker``)."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    models, rows = {}, {}
    for name in args.experiments:
        cfg, model = build(name, args.profile, args.weights_dir)
        models[name] = model.to(device).eval()
        rows[name] = {"experiment": name, "display_name": cfg.display_name, "params": sum(p.numel() for p in model.parameters())}
    # Size-major: the models of one size run back to back, under the same machine load.
    for size in args.sizes:
        video = synthetic_video(args.warmup + args.frames, size)
        for name, model in models.items():
            seconds, outputs = run_video(model, video, args.warmup, device)
            rows[name][f"fps@{size}"] = args.frames / seconds
            if args.outputs:
                torch.save(outputs, Path(args.outputs) / f"{name}@{size}.pt")
    for size in args.sizes if args.flops else ():
        video = synthetic_video(args.warmup + _FLOP_FRAMES, size)
        for name, model in models.items():
            rows[name][f"gflops@{size}"] = count_flops(model, video, args.warmup, device) / 1e9
    return list(rows.values())


def run_worker(args: argparse.Namespace, code: Path, *, flops: bool, outputs: Path, weights_dir: Path) -> list[dict]:
    """:func:`measure` in a fresh process importing ``ultradet`` from ``code``; the random
    backbone weights of a profile are written once into ``weights_dir`` and shared by every
    worker, so that both codes run the same model."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--experiments", *args.experiments,
               "--sizes", *map(str, args.sizes), "--frames", str(args.frames), "--warmup", str(args.warmup),
               "--threads", str(args.threads), "--device", args.device, "--outputs", str(outputs),
               "--weights-dir", str(weights_dir)]
    command += ["--profile", str(Path(args.profile).resolve())] if args.profile else []
    command += ["--flops"] if flops else []
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{_HERE}"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=_HERE.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker for {code} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def extract_revision(rev: str, into: Path) -> Path:
    """The ``ultradet`` package of git revision ``rev`` under ``into`` (``git archive``)."""
    archive = subprocess.run(["git", "archive", rev, "ultradet"], cwd=_HERE.parent, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def largest_difference(before: Path, after: Path, names: list[str], sizes: list[int]) -> dict[str, float]:
    """Per ``name@size``: the largest absolute difference of scores and boxes between the two
    codes' detections of the benchmark clip (inf when a frame's detection count differs)."""
    found = {}
    for name in names:
        for size in sizes:
            a, b = (torch.load(d / f"{name}@{size}.pt") for d in (before, after))
            worst = 0.0
            for x, y in zip(a, b):
                if (x is None) != (y is None) or (x is not None and x["scores"].shape != y["scores"].shape):
                    worst = float("inf")
                    break
                if x is not None and len(x["scores"]):
                    worst = max(worst, (x["scores"] - y["scores"]).abs().max().item(), (x["boxes"] - y["boxes"]).abs().max().item())
            found[f"{name}@{size}"] = worst
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=_EXPERIMENTS, help="default: every experiment file")
    parser.add_argument("--profile", default=None, help="a profile file (e.g. experiments/profiles/cpu.yaml); default: the paper's settings")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 948])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="runs per code; the table gives medians")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--baseline-rev", default=None, help="also measure this git revision's code (before/after)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/bench_models.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--flops", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--outputs", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--weights-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        codes = {"after": _HERE.parent}
        if args.baseline_rev:
            codes["before"] = extract_revision(args.baseline_rev, tmp / "before")
        fps: dict[str, dict[tuple[str, int], list[float]]] = {code: {} for code in codes}
        rows = None
        for repeat in range(args.repeats):
            for code, path in codes.items():
                (tmp / code).mkdir(exist_ok=True)
                measured = run_worker(args, path, flops=code == "after" and repeat == 0, outputs=tmp / code, weights_dir=tmp)
                rows = rows or measured
                for row in measured:
                    for size in args.sizes:
                        fps[code].setdefault((row["experiment"], size), []).append(row[f"fps@{size}"])
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
        differences = largest_difference(tmp / "before", tmp / "after", args.experiments, args.sizes) if args.baseline_rev else {}
    result = summarise(args, rows, fps, differences)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(_table(result, args.sizes))
    for name, per_size in result["fps_over_fasterrcnn"].items():
        paper = result["paper_fps_over_fasterrcnn"].get(name)
        cells = ", ".join(f"{ratio:.2f} at {size}x{size}" for size, ratio in per_size.items())
        before = result["fps_over_fasterrcnn_before"].get(name)
        was = f" (before: {', '.join(f'{r:.2f}' for r in before.values())})" if before else ""
        print(f"{name} / FasterRCNN FPS: {cells}{was}" + (f" (paper {paper:.2f})" if paper else ""))
    for key, diff in differences.items():
        print(f"largest |before - after| of scores and boxes, {key}: {diff:.2e}")
    print(f"-> {args.out}")


def summarise(args, rows: list[dict], fps: dict, differences: dict) -> dict:
    """The JSON result: per model the median FPS of each code at each size, FLOPs, FPS ratios
    to FasterRCNN, the paper's ratios and the before/after output differences."""
    models = []
    for row in rows:
        entry = {k: row[k] for k in ("experiment", "display_name", "params")}
        for size in args.sizes:
            key = (row["experiment"], size)
            entry[f"fps@{size}"] = statistics.median(fps["after"][key])
            entry[f"fps_runs@{size}"] = fps["after"][key]
            entry[f"gflops@{size}"] = row[f"gflops@{size}"]
            if "before" in fps:
                entry[f"fps_before@{size}"] = statistics.median(fps["before"][key])
                entry[f"fps_before_runs@{size}"] = fps["before"][key]
        models.append(entry)

    def ratios(prefix: str) -> dict:
        """Per model and size, the median over repeats of FPS / FasterRCNN's FPS measured in the
        same run (back to back, so that load drifts between runs cancel)."""
        by_name = {m["experiment"]: m for m in models}
        base = by_name.get("fasterrcnn")
        if base is None or f"{prefix}_runs@{args.sizes[0]}" not in base:
            return {}
        return {
            n: {str(s): statistics.median(a / b for a, b in zip(m[f"{prefix}_runs@{s}"], base[f"{prefix}_runs@{s}"])) for s in args.sizes}
            for n, m in by_name.items()
        }

    return {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(torch.device(args.device)),
        "machine": platform.processor() or platform.machine(),
        "profile": args.profile or "paper defaults",
        "torch_threads": args.threads,
        "frames_timed": args.frames,
        "warmup_frames": args.warmup,
        "repeats": args.repeats,
        "baseline_rev": args.baseline_rev,
        "models": models,
        "fps_over_fasterrcnn": ratios("fps"),
        "fps_over_fasterrcnn_before": ratios("fps_before"),
        "paper_fps_over_fasterrcnn": paper_fps_ratios({m["experiment"]: m["display_name"] for m in models}),
        "largest_output_difference": differences,
    }


def _table(result: dict, sizes: list[int]) -> str:
    models, before = result["models"], bool(result["baseline_rev"])
    header = ["model", "params (M)"]
    for s in sizes:
        header += [f"FPS@{s} before", f"FPS@{s} after"] if before else [f"FPS@{s}"]
        header += [f"/FRCNN@{s} before", f"/FRCNN@{s} after"] if before else [f"/FRCNN@{s}"]
    header += [f"GFLOPs@{s}" for s in sizes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ratio, ratio_before = result["fps_over_fasterrcnn"], result["fps_over_fasterrcnn_before"]
    for m in models:
        name = m["experiment"]
        cells = [m["display_name"], f"{m['params'] / 1e6:.2f}"]
        for s in sizes:
            cells += [f"{m[f'fps_before@{s}']:.2f}"] if before else []
            cells += [f"{m[f'fps@{s}']:.2f}"]
            cells += [f"{ratio_before[name][str(s)]:.2f}" if ratio_before else "-"] if before else []
            cells += [f"{ratio[name][str(s)]:.2f}" if ratio else "-"]
        cells += [f"{m[f'gflops@{s}']:.1f}" for s in sizes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
