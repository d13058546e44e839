"""Training and online inference."""

from ultradet.engine.checkpoint import atomic_torch_save, last_checkpoint, load_checkpoint
from ultradet.engine.hooks import LossCSVWriter
from ultradet.engine.inference import ComputeClock, Timing, run_inference, stream_video, timing_dict, to_coco_results
from ultradet.engine.runtime import resolve_device, seed_everything
from ultradet.engine.solver import build_lr_scheduler, build_optimizer
from ultradet.engine.trainer import NonFiniteLossError, Trainer

__all__ = [
    "ComputeClock",
    "LossCSVWriter",
    "NonFiniteLossError",
    "Timing",
    "Trainer",
    "atomic_torch_save",
    "build_lr_scheduler",
    "build_optimizer",
    "last_checkpoint",
    "load_checkpoint",
    "resolve_device",
    "run_inference",
    "seed_everything",
    "stream_video",
    "timing_dict",
    "to_coco_results",
]
