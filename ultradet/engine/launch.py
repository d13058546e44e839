"""One-call entry points shared by the DVC stages, Ray Tune trials and ``ultradet predict``: train
a config on a set of videos; load a trained model; predict videos (or a user's clip) online."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from ultradet.config import ExperimentConfig
from ultradet.data import build_train_loader, iter_test_frames, resize_for_test
from ultradet.data.records import VideoRecord
from ultradet.engine.checkpoint import load_checkpoint
from ultradet.engine.distributed import WorkerGroup
from ultradet.engine.hooks import Hook
from ultradet.engine.inference import ComputeClock, Key, Timing, run_inference, stream_video
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
        clip_norm=cfg.solver.clip_norm,
        amp=cfg.solver.amp,
        hooks=hooks,
        progress=progress,
    )


def load_trained_model(
    cfg: ExperimentConfig, weights: str | Path, *, device: torch.device | None = None
) -> torch.nn.Module:
    """Build ``cfg``'s model on ``device`` (default: ``cfg.device``) and load ``weights``
    (``model_final.pth`` or a trainer checkpoint: every tensor of the model, so the config's
    initial weights are not read); returned in eval mode.

    Raises:
        FileNotFoundError / ValueError: see :func:`ultradet.engine.checkpoint.load_checkpoint`.
    """
    device = device or resolve_device(cfg.device)
    model = build_model(cfg, initial_weights=False)
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


def predict_frames(
    cfg: ExperimentConfig,
    model: torch.nn.Module,
    frames: Iterable[tuple[Key, np.ndarray]],
    *,
    clock: ComputeClock,
) -> Iterator[tuple[Key, dict]]:
    """Online inference over one clip that is not in a dataset (a user's video, DICOM cine loop
    or array), exactly as the evaluation runs a test video: each frame resized as
    :func:`ultradet.data.iter_test_frames` resizes, then :func:`stream_video` (``reset()`` first,
    a lookahead flushed at the end).

    Args:
        frames: ``(key, rgb)`` in frame order, ``rgb`` uint8 ``(H, W, 3)``; read one at a time.
            A key is held until its detections are emitted (at most ``lookahead + 1`` of them).
        clock: times the model calls.

    Yields:
        ``(key, detections)`` in frame order (boxes XYXY pixels of the original frame).
    """
    device = next(model.parameters()).device
    resized = (
        (key, resize_for_test(rgb, fixed_area_test=cfg.input.fixed_area_test, scale_test=cfg.input.scale_test), rgb.shape[:2])
        for key, rgb in frames
    )
    return stream_video(model, resized, device=device, clock=clock)
