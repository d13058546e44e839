"""One-call entry points shared by the DVC stages and Ray Tune trials: train a config on a set of
videos; load a trained model; predict videos online."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ultradet.config import ExperimentConfig
from ultradet.data import build_train_loader, iter_test_frames
from ultradet.data.records import VideoRecord
from ultradet.engine.checkpoint import load_checkpoint
from ultradet.engine.distributed import WorkerGroup
from ultradet.engine.hooks import Hook
from ultradet.engine.inference import Timing, run_inference
from ultradet.engine.runtime import resolve_device, seed_everything
from ultradet.engine.solver import build_lr_scheduler, build_optimizer
from ultradet.engine.trainer import Trainer
from ultradet.modeling import build_model


def build_trainer(
    cfg: ExperimentConfig,
    videos: Sequence[VideoRecord],
    output_dir: str | Path,
    *,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
    device: torch.device | None = None,
) -> Trainer:
    """Build the model, optimizer, schedule and the seeded clip stream for ``cfg`` on ``videos``.

    Seeds every RNG with ``cfg.seed`` first, so the same config and videos train identically.
    Inside a ``torch.distributed`` process group (data-parallel workers) this worker reads only
    its shard of each global batch of ``cfg.solver.clips_per_batch`` clips, and accumulates
    ``clips_per_batch / (world_size * clips_per_worker)`` micro-batches per step; give ``hooks``
    to rank 0 only.

    Args:
        device: where to train; default ``cfg.device`` (a Ray GPU worker passes its own GPU).

    Raises:
        ConfigError: ``clips_per_batch`` does not split into the workers' micro-batches.
    """
    group = WorkerGroup.current()
    accumulation_steps = cfg.solver.accumulation_steps(group.world_size)
    seed_everything(cfg.seed)
    device = device or resolve_device(cfg.device)
    model = build_model(cfg)
    optimizer = build_optimizer(model, cfg.solver)
    return Trainer(
        model=model,
        data=lambda start_iter: build_train_loader(
            videos, cfg, seed=cfg.seed, start_iter=start_iter, rank=group.rank, world_size=group.world_size
        ),
        seed=cfg.seed,
        accumulation_steps=accumulation_steps,
        optimizer=optimizer,
        scheduler=build_lr_scheduler(optimizer, cfg.solver),
        output_dir=output_dir,
        max_iter=cfg.solver.max_iter,
        checkpoint_period=cfg.solver.checkpoint_period,
        device=device,
        clip_value=cfg.solver.clip_value,
        amp=cfg.solver.amp,
        hooks=hooks,
        progress=progress,
    )


def load_trained_model(cfg: ExperimentConfig, weights: str | Path) -> torch.nn.Module:
    """Build ``cfg``'s model on its device and load ``weights`` (``model_final.pth`` or a
    trainer checkpoint); returned in eval mode.

    Raises:
        FileNotFoundError / ValueError: see :func:`ultradet.engine.checkpoint.load_checkpoint`.
    """
    device = resolve_device(cfg.device)
    model = build_model(cfg)
    model.load_state_dict(load_checkpoint(weights, map_location=device)["model"])
    return model.to(device).eval()


def predict_videos(
    cfg: ExperimentConfig,
    model: torch.nn.Module,
    videos: Sequence[VideoRecord],
    *,
    warmup_frames: int = 5,
    progress: bool = True,
) -> tuple[list[dict], Timing]:
    """Online inference over ``videos`` at the config's test scale; see
    :func:`ultradet.engine.inference.run_inference`."""

    def frames_of(video: VideoRecord):
        return iter_test_frames(video, fixed_area_test=cfg.input.fixed_area_test, scale_test=cfg.input.scale_test)

    device = next(model.parameters()).device
    return run_inference(model, videos, frames_of, device=device, warmup_frames=warmup_frames, progress=progress)
