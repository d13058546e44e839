"""An optimizer step of the real detector is the same update whatever the split of its global
batch: 2 gloo workers x 1 clip, 1 worker x 2 accumulation steps, 1 worker x 2 clips.

AdamW's first update is about ``lr * sign(gradient)``, so the test compares the gradient itself
(the first moment after step 1 is ``(1 - beta1) * gradient``) as well as the weights after the
step (both from the step-1 checkpoint; later Adam steps divide float noise in gradients that are
zero in exact arithmetic, such as the attention's key bias, by its own tiny running scale)."""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ultradet.config import load_experiment
from ultradet.data import load_videos, split_by_folds
from ultradet.engine.launch import build_trainer
from ultradet.modeling import build_model

ROOT = Path(__file__).resolve().parents[2]


def config(**solver):
    overrides = {
        # a frozen stem needs pretrained weights: train every layer, with batch statistics
        "model.backbone.norm": "bn", "model.backbone.freeze_at": 0,
        "solver.max_iter": 2, "solver.checkpoint_period": 1, "solver.base_lr": 1e-3, "solver.warmup_iters": 0,
        **{f"solver.{k}": v for k, v in solver.items()},
    }
    return load_experiment(
        "ultradet", experiments_dir=ROOT / "experiments", profile=ROOT / "experiments/profiles/smoke.yaml", overrides=overrides
    )


def written(out: Path) -> tuple[list[torch.Tensor], dict]:
    """(first moments after step 1, in parameter order; weights after step 1)."""
    state = torch.load(out / "model_0000001.pth", weights_only=False)
    moments = state["optimizer"]["state"]
    return [moments[i]["exp_avg"] for i in sorted(moments)], state["model"]


def train(cfg, videos, out: Path) -> tuple[list[torch.Tensor], dict]:
    build_trainer(cfg, videos, out, progress=False).train(resume=False)
    return written(out)


def _gloo_worker(rank: int, world_size: int, cfg, videos, out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}.pg", rank=rank, world_size=world_size)
    try:
        build_trainer(cfg, videos, out, progress=False).train(resume=False)
    finally:
        dist.destroy_process_group()


def test_a_step_is_the_same_for_every_split_of_the_global_batch(tmp_path, tiny_dataset):
    videos, _ = split_by_folds(load_videos(tiny_dataset, "trainval", num_folds=4), [0])
    torch.set_num_threads(1)
    two_clips = train(config(clips_per_batch=2, clips_per_worker=2), videos, tmp_path / "clips")
    two_steps = train(config(clips_per_batch=2, clips_per_worker=1), videos, tmp_path / "accumulated")
    mp.spawn(_gloo_worker, args=(2, config(clips_per_batch=2), videos, tmp_path / "ddp"), nprocs=2, join=True)
    two_workers = written(tmp_path / "ddp")
    one_clip = train(config(clips_per_batch=1), videos, tmp_path / "one")

    # parameters only: BatchNorm's running statistics follow the order in which clips are seen
    params = [name for name, _ in build_model(config()).named_parameters()]
    for other in (two_steps, two_workers):
        assert len(other[0]) == len(two_clips[0]) == len(params)
        for want, got in zip(two_clips[0], other[0]):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
        for name in params:
            torch.testing.assert_close(other[1][name], two_clips[1][name], rtol=1e-5, atol=1e-6, msg=name)
    # the comparison can fail: half of the global batch gives another gradient
    assert any(not torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(one_clip[0], two_clips[0]))
