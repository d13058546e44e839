"""Training speed and memory per model at a profile's scale, and the data-parallel speed-up.

    python benchmarks/bench_train.py [--profile experiments/profiles/paper.yaml]
        [--models fasterrcnn basicdet ultradet] [--warmup 1] [--iters 2] [--device auto]
        [--ddp-ratio] [--out benchmarks/results/bench_train.json]

Each model trains with the real :class:`ultradet.engine.Trainer` step (forward, backward, AdamW)
on synthetic clips of the profile's shape: ``sampler.clip_frames`` frames of a square image
of area ``input.fixed_area_train`` (948 x 948 x 16 frames at the paper profile), two lesion
boxes per frame; data loading is not timed. The backbone starts from random weights in
ImageNet format (:func:`load_offline`), so nothing is downloaded; frozen BN and stages stay.
One micro-batch is ``solver.clips_per_worker`` clips; ``--warmup`` micro-batches are run first,
then ``--iters`` are timed. The profile's iteration is
``clips_per_batch / clips_per_worker`` micro-batches on one worker (gradient accumulation), so
``s/iteration`` = that many x the measured s/micro-batch (micro-batches of a step cost the same;
the optimizer step itself is timed with each). Each model runs in a fresh process: peak memory
is ``torch.cuda.max_memory_allocated`` on CUDA and the process's peak RSS on the CPU.

``--ddp-ratio`` (CPU): the throughput (clips/s) of 2 gloo DDP workers x 1 clip against 1
worker x 2 accumulation steps, over the same global batches of the first model (torch
processes joined by a file store, as Ray Train's workers would be; Ray's own start-up, ~30 s
once per run, is not counted).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision

from ultradet.config import ExperimentConfig, load_experiment
from ultradet.engine import Trainer, build_lr_scheduler, build_optimizer, resolve_device
from ultradet.modeling import build_model

_MODELS = ("fasterrcnn", "basicdet", "ultradet")


def synthetic_clip(cfg: ExperimentConfig, draw: int) -> dict:
    """A training clip of ``cfg``'s shape (docs/architecture.md) with stream index ``draw``."""
    side = int(round(cfg.input.fixed_area_train**0.5))
    frames = cfg.sampler.clip_frames  # with the memory sampler: its memory frames too
    g = torch.Generator().manual_seed(draw)
    boxes = torch.tensor([[0.2, 0.3, 0.45, 0.5], [0.6, 0.55, 0.8, 0.85]]) * side
    return {
        "images": torch.rand(frames, 3, side, side, generator=g) * 255,
        "boxes": [boxes + t for t in range(frames)],
        "labels": [torch.zeros(2, dtype=torch.int64) for _ in range(frames)],
        "video_id": 0,
        "frame_ids": torch.arange(frames),
        "draw": draw,
    }


def load_offline(name: str, profile: str, weights_dir: str, overrides: dict | None = None) -> ExperimentConfig:
    """``name`` under ``profile`` with randomly initialised ImageNet-format backbone weights
    (``weights_dir/resnet<depth>.pth``) in place of the profile's (e.g. torchvision's ImageNet
    download, or the pretrain stage's detector): speed and memory do not depend on the values,
    and the benchmark needs neither a download nor a pipeline run. Frozen BN and frozen stages
    stay as the profile sets them."""
    depth = load_experiment(name, profile=profile, overrides=overrides or {}).model.backbone.depth
    path = Path(weights_dir) / f"resnet{depth}.pth"
    if not path.is_file():
        torch.save(getattr(torchvision.models, f"resnet{depth}")().state_dict(), path)
    offline = {"model.weights": None, "model.backbone.weights": str(path)}
    return load_experiment(name, profile=profile, overrides={**(overrides or {}), **offline})


def micro_batches(cfg: ExperimentConfig, rank: int = 0, world_size: int = 1):
    """``data(start_iter)`` for the trainer: this worker's micro-batches, synthetic clips."""
    per = cfg.solver.clips_per_worker

    def stream(start_iter: int):
        draw = start_iter * cfg.solver.clips_per_batch + rank * per
        while True:
            yield [synthetic_clip(cfg, draw + k) for k in range(per)]
            draw += per * world_size

    return stream


def make_trainer(cfg: ExperimentConfig, device: torch.device, out: str, *, steps: int, accumulation: int, rank: int = 0, world: int = 1) -> Trainer:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg.solver)
    return Trainer(
        model=model, data=micro_batches(cfg, rank, world), seed=cfg.seed, optimizer=optimizer,
        scheduler=build_lr_scheduler(optimizer, cfg.solver), output_dir=out, max_iter=steps,
        checkpoint_period=10**9, device=device, clip_value=cfg.solver.clip_value, amp=cfg.solver.amp,
        accumulation_steps=accumulation, progress=False,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_micro_batches(trainer: Trainer, warmup: int, iters: int, device: torch.device) -> list[float]:
    """Seconds of each of ``iters`` micro-batches (one optimizer step each: forward, backward,
    AdamW) after ``warmup`` untimed ones, CUDA synchronised around each."""
    trainer.model.train()
    batches = iter(trainer.data(0))
    times = []
    for i in range(warmup + iters):
        trainer.iteration = i + 1
        batch = next(batches)
        _sync(device)
        start = time.perf_counter()
        trainer._step([batch])
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def measure_model(name: str, profile: str, warmup: int, iters: int, device_name: str, queue) -> None:
    """In a fresh process: s per micro-batch (one optimizer step each) and peak memory."""
    with tempfile.TemporaryDirectory() as out:
        cfg = load_offline(name, profile, out)
        device = resolve_device(device_name if device_name != "auto" else cfg.device)
        trainer = make_trainer(cfg, device, out, steps=warmup + iters, accumulation=1)
        times = time_micro_batches(trainer, warmup, iters, device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        peak_kind = "torch.cuda.max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        peak_kind = "peak RSS of the process"
    micro = sum(times) / len(times)
    per_iteration = cfg.solver.clips_per_batch // cfg.solver.clips_per_worker
    queue.put({
        "model": name, "device": str(device), "clips_per_batch": cfg.solver.clips_per_batch,
        "clips_per_worker": cfg.solver.clips_per_worker,
        "frames": cfg.sampler.clip_frames, "side_px": int(round(cfg.input.fixed_area_train**0.5)),
        "s_per_micro_batch": micro, "micro_batches_per_iteration": per_iteration,
        "s_per_iteration": micro * per_iteration, "peak_memory_mib": peak, "peak_memory_kind": peak_kind,
        "timed_micro_batches": len(times),
    })


def _ddp_worker(rank: int, world: int, name: str, profile: str, warmup: int, iters: int, store: str, queue) -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    with tempfile.TemporaryDirectory() as out:
        cfg = load_offline(name, profile, out, {"solver.clips_per_batch": 2, "solver.clips_per_worker": 1})
        trainer = make_trainer(cfg, torch.device("cpu"), out, steps=warmup + iters, accumulation=2 // world, rank=rank, world=world)
        trainer.model.train()
        batches = iter(trainer.data(0))
        start = None
        for i in range(warmup + iters):
            if i == warmup:
                if world > 1:
                    dist.barrier()
                start = time.perf_counter()
            trainer.iteration = i + 1
            trainer._step([next(batches) for _ in range(trainer.accumulation_steps)])
        elapsed = time.perf_counter() - start
    if world > 1:
        dist.destroy_process_group()
    if rank == 0:
        queue.put({"workers": world, "s_per_iteration": elapsed / iters, "clips_per_s": 2 * iters / elapsed})


def ddp_ratio(name: str, profile: str, warmup: int, iters: int) -> dict:
    """2 gloo workers x 1 clip vs 1 worker x 2 accumulation steps (2 clips per step each)."""
    ctx = mp.get_context("spawn")
    results = {}
    for world in (1, 2):
        queue = ctx.Queue()
        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(_ddp_worker, args=(world, name, profile, warmup, iters, f"{tmp}/store", queue), nprocs=world, join=True)
        results[world] = queue.get()
    return {
        "model": name, "one_worker": results[1], "two_workers": results[2],
        "throughput_ratio_2_vs_1": results[2]["clips_per_s"] / results[1]["clips_per_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="experiments/profiles/paper.yaml")
    parser.add_argument("--models", nargs="+", default=list(_MODELS))
    parser.add_argument("--warmup", type=int, default=1, help="untimed micro-batches first")
    parser.add_argument("--iters", type=int, default=2, help="timed micro-batches")
    parser.add_argument("--device", default="auto", help="auto (the profile's device) / cpu / cuda")
    parser.add_argument("--ddp-ratio", action="store_true", help="also measure 2 vs 1 CPU workers (first model)")
    parser.add_argument("--out", default="benchmarks/results/bench_train.json")
    args = parser.parse_args()

    ctx = mp.get_context("spawn")
    rows = []
    for name in args.models:
        queue = ctx.Queue()
        proc = ctx.Process(target=measure_model, args=(name, args.profile, args.warmup, args.iters, args.device, queue))
        proc.start()
        row = queue.get()
        proc.join()
        rows.append(row)
        print(
            f"{name:11s} {row['device']:5s} {row['frames']} x {row['side_px']}^2 px: {row['s_per_micro_batch']:.3f} s/micro-batch "
            f"({row['clips_per_worker']} clip), {row['s_per_iteration']:.2f} s/iteration ({row['clips_per_batch']} clips, "
            f"{row['micro_batches_per_iteration']} accumulation steps), peak {row['peak_memory_mib']:.0f} MiB ({row['peak_memory_kind']})",
            flush=True,
        )
    result = {
        "profile": args.profile, "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "models": rows,
    }
    if args.ddp_ratio:
        ratio = ddp_ratio(args.models[0], args.profile, args.warmup, max(args.iters, 2))
        result["ddp_ratio"] = ratio
        print(
            f"DDP on CPU ({ratio['model']}, 1 thread per worker): 1 worker x 2 accumulation steps "
            f"{ratio['one_worker']['clips_per_s']:.3f} clips/s, 2 gloo workers x 1 clip "
            f"{ratio['two_workers']['clips_per_s']:.3f} clips/s: ratio {ratio['throughput_ratio_2_vs_1']:.2f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
