"""The GPU check: every model of the table at the paper profile on one CUDA device, in minutes.

    python benchmarks/device_check.py [--experiments fasterrcnn basicdet ultradet ...]
        [--profile experiments/profiles/paper.yaml] [--size 948] [--warmup-iters 1] [--iters 2]
        [--warmup 8] [--frames 16] [--budget-s 420] [--out benchmarks/results/device_check]

Per model, without and with mixed precision (float16 autocast; training also scales the loss,
``solver.amp``):

- training: micro-batches of the profile's shape (``bench_train``: 16 frames of 948 x 948 px,
  ResNet-34, one clip) with the real trainer step (forward, backward, AdamW), ``--warmup-iters``
  untimed then ``--iters`` timed, synchronised around each; ``s/iteration`` = ``clips_per_batch``
  (8) x s/micro-batch, the paper's 8 clips as accumulation steps on one GPU; peak memory =
  ``torch.cuda.max_memory_allocated`` over the model's training;
- online inference: a synthetic video (``bench_models``) of ``--size`` x ``--size`` frames (948:
  the paper's test area of 900,000 px), ``reset()`` + ``infer_frame`` frame by frame with a
  ``torch.cuda.synchronize()`` after every frame, as the original measures FPS; ``--warmup``
  frames untimed, then ``--frames`` timed.

Weights are random in ImageNet format (nothing is downloaded; speed does not depend on them).
UltraDet's default flow (Farneback) runs on the CPU, as in the pipeline. A model that fails
(e.g. out of memory) gets its error in its row and the check goes on; models left when
``--budget-s`` seconds have passed are listed as skipped, so the whole check stays within about
8 minutes. Writes ``<out>.json`` and ``<out>.md`` (a Markdown table). Without CUDA it stops at
once with a message and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

# The project (and the benchmarks that build on it) is imported after the CUDA check, inside the
# functions that measure: without CUDA the check ends before loading it.

NO_CUDA = (
    "device_check: CUDA is not available here (torch.cuda.is_available() is False: no NVIDIA GPU, no driver, "
    "or a CPU-only torch build). Run this check on a machine with a CUDA GPU."
)


def measure_training(name: str, profile: str, *, amp: bool, warmup: int, iters: int, device: torch.device, weights_dir: str) -> dict:
    """s per micro-batch and per iteration, and peak memory (MiB, CUDA only) of ``name``'s
    training at ``profile`` with ``solver.amp = amp``."""
    from bench_train import load_offline, make_trainer, time_micro_batches

    cfg = load_offline(name, profile, weights_dir, {"solver.amp": amp})
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trainer(cfg, device, out, steps=warmup + iters, accumulation=1)
        times = time_micro_batches(trainer, warmup, iters, device)
    micro = sum(times) / len(times)
    steps = cfg.solver.clips_per_batch // cfg.solver.clips_per_worker
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"s_per_micro_batch": micro, "s_per_iteration": micro * steps, "micro_batches_per_iteration": steps, "peak_memory_mib": peak}


def measure_inference(name: str, profile: str, *, amp: bool, size: int, warmup: int, frames: int, device: torch.device, weights_dir: str) -> dict:
    """Online FPS of ``name`` over ``frames`` frames of ``size`` x ``size`` after ``warmup``,
    synchronised after every frame, under float16 autocast if ``amp``; peak memory (MiB, CUDA)."""
    from bench_models import run_video, synthetic_video
    from bench_train import load_offline
    from ultradet.modeling import build_model

    cfg = load_offline(name, profile, weights_dir)
    torch.manual_seed(0)
    model = build_model(cfg).to(device).eval()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    video = synthetic_video(warmup + frames, size)
    autocast = torch.autocast(device_type=device.type, dtype=torch.float16) if amp else nullcontext()
    with autocast:
        seconds, _ = run_video(model, video, warmup, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"fps": frames / seconds, "inference_peak_memory_mib": peak}


def check_model(name: str, args: argparse.Namespace, device: torch.device, weights_dir: str) -> dict:
    """Every measurement of one model; a failing one records its error instead."""
    row = {"experiment": name}
    for amp in (False, True):
        tag = "amp" if amp else "fp32"
        for kind, measure, kwargs in (
            ("train", measure_training, dict(warmup=args.warmup_iters, iters=args.iters)),
            ("infer", measure_inference, dict(size=args.size, warmup=args.warmup, frames=args.frames)),
        ):
            try:
                found = measure(name, args.profile, amp=amp, device=device, weights_dir=weights_dir, **kwargs)
                row.update({f"{kind}_{tag}_{key}": value for key, value in found.items()})
            except (RuntimeError, ValueError) as exc:  # out of memory, an op without a float16 kernel, ...
                row[f"{kind}_{tag}_error"] = str(exc).strip().splitlines()[0][:300]
    return row


def markdown(result: dict) -> str:
    """The check as a Markdown table (one row per model)."""
    head = (
        f"GPU check: {result['gpu']} (torch {result['torch']}, CUDA {result['cuda']}), profile {result['profile']}, "
        f"online FPS at {result['size']}x{result['size']} px (synchronised after every frame), {result['wall_s']:.0f} s in all\n\n"
    )
    columns = ["model", "train s/iter fp32", "train s/iter AMP", "train peak GiB fp32", "train peak GiB AMP",
               "FPS fp32", "FPS AMP", "notes"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in result["models"]:
        if row.get("skipped"):
            lines.append(f"| {row['experiment']} | " + " | ".join(["-"] * 6) + f" | {row['skipped']} |")
            continue
        errors = "; ".join(f"{k.removesuffix('_error')}: {v}" for k, v in row.items() if k.endswith("_error"))
        cells = [row["experiment"]]
        cells += [_cell(row.get(f"train_{tag}_s_per_iteration"), "{:.2f}") for tag in ("fp32", "amp")]
        cells += [_cell(row.get(f"train_{tag}_peak_memory_mib"), "{:.1f}", scale=1 / 1024) for tag in ("fp32", "amp")]
        cells += [_cell(row.get(f"infer_{tag}_fps"), "{:.1f}") for tag in ("fp32", "amp")]
        lines.append("| " + " | ".join(cells + [errors]) + " |")
    return head + "\n".join(lines) + "\n"


def _cell(value: float | None, fmt: str, scale: float = 1.0) -> str:
    return "-" if value is None else fmt.format(value * scale)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=None, help="default: every model of bench_models.py")
    parser.add_argument("--profile", default="experiments/profiles/paper.yaml")
    parser.add_argument("--size", type=int, default=948, help="online test frames, px (948^2 ~ the paper's 900,000 px)")
    parser.add_argument("--warmup-iters", type=int, default=1, help="untimed training micro-batches")
    parser.add_argument("--iters", type=int, default=2, help="timed training micro-batches")
    parser.add_argument("--warmup", type=int, default=8, help="untimed online frames")
    parser.add_argument("--frames", type=int, default=16, help="timed online frames")
    parser.add_argument("--budget-s", type=float, default=420.0, help="no new model starts after this many seconds")
    parser.add_argument("--out", default="benchmarks/results/device_check", help="writes <out>.json and <out>.md")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    device = torch.device("cuda")
    if args.experiments is None:
        from bench_models import _EXPERIMENTS

        args.experiments = list(_EXPERIMENTS)
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as weights_dir:
        for name in args.experiments:
            if time.perf_counter() - start > args.budget_s:
                rows.append({"experiment": name, "skipped": f"time budget of {args.budget_s:.0f} s spent"})
                continue
            rows.append(check_model(name, args, device, weights_dir))
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "gpu": torch.cuda.get_device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(), "machine": platform.machine(), "profile": args.profile,
        "size": args.size, "frames_timed": args.frames, "warmup_frames": args.warmup,
        "train_iters_timed": args.iters, "train_warmup_iters": args.warmup_iters,
        "wall_s": time.perf_counter() - start, "models": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    Path(f"{args.out}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
