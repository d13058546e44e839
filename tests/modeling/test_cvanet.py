"""CVA-Net (baselines spec 3.3): the channel-pair fusion against hand values, the memory/local
pairing of training, the test partner t - partner_offset (clamped to the window), causality,
reset isolation (the original's leak across videos is fixed) and a short overfit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from modeltoy import (
    SIZE,
    TINY_DETR,
    lesion_clip,
    overfit_history,
    run_online,
    same_detections,
    same_when_later_frames_change,
    tiny_config,
)
from torchvision.ops import box_iou

from ultradet.config import ConfigError, load_experiment
from ultradet.modeling import build_model
from ultradet.modeling.layers.channel_fuse import channel_pair_fuse
from ultradet.modeling.meta_arch.cva_net import CVANet

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _model(seed: int = 0, **overrides) -> CVANet:
    torch.manual_seed(seed)
    return build_model(tiny_config(EXPERIMENTS / "cvanet.yaml", **TINY_DETR, model__detr__dropout=0.0, **overrides))


def _spy(model: CVANet) -> list[torch.Tensor]:
    """Record every map ``model.predict`` is given (the fused maps)."""
    seen, predict = [], model.predict

    def recording(features):
        seen.append(features)
        return predict(features)

    model.predict = recording
    return seen


def _video(frames: int, seed: int) -> list[torch.Tensor]:
    return list(lesion_clip(frames, seed)["images"])


# ------------------------------------------------------------------------------------ Fuse
def test_fuse_is_the_mean_of_adjacent_channel_pairs_of_the_concatenation():
    a = torch.tensor([1.0, 3.0, 10.0, 20.0]).view(1, 4, 1, 1).expand(1, 4, 2, 3)
    b = torch.tensor([-2.0, 6.0, 5.0, 7.0]).view(1, 4, 1, 1).expand(1, 4, 2, 3)
    # cat = (1, 3, 10, 20, -2, 6, 5, 7): pairs (1, 3), (10, 20) from a, (-2, 6), (5, 7) from b
    expected = torch.tensor([2.0, 15.0, 2.0, 6.0]).view(1, 4, 1, 1).expand(1, 4, 2, 3)
    assert torch.equal(channel_pair_fuse(a, b), expected)
    x, y = torch.randn(3, 6, 4, 5), torch.randn(3, 6, 4, 5)
    fused = channel_pair_fuse(x, y)
    for k in range(3):  # every pixel, every frame of a batch
        torch.testing.assert_close(fused[:, k], (x[:, 2 * k] + x[:, 2 * k + 1]) / 2)
        torch.testing.assert_close(fused[:, 3 + k], (y[:, 2 * k] + y[:, 2 * k + 1]) / 2)
    with pytest.raises(ValueError, match="even channel count"):
        channel_pair_fuse(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))


# ---------------------------------------------------------------------------------- config
def test_config_pairs_memory_and_local_frames_under_every_profile():
    for profile, frames in ((None, 8), ("cpu.yaml", 4), ("smoke.yaml", 3)):
        cfg = load_experiment("cvanet", experiments_dir=EXPERIMENTS, profile=profile and EXPERIMENTS / "profiles" / profile)
        assert cfg.sampler.name == "memory" and cfg.sampler.memory_frames == cfg.sampler.num_out_frames == frames
    cpu = load_experiment("cvanet", experiments_dir=EXPERIMENTS, profile=EXPERIMENTS / "profiles" / "cpu.yaml")
    assert cpu.model.temporal.interval_pre_test >= cpu.model.cva_net.partner_offset == 8  # the partner is buffered
    with pytest.raises(ConfigError, match=r"memory_frames \(3\) equal to sampler.num_out_frames \(8\)"):
        load_experiment("cvanet", experiments_dir=EXPERIMENTS, overrides={"sampler.memory_frames": 3})
    with pytest.raises(ConfigError, match="needs sampler.name: memory"):
        load_experiment("cvanet", experiments_dir=EXPERIMENTS, overrides={"sampler.name": "clip"})


def test_parameters_are_deformdetrs_so_the_lr_multipliers_hit_the_same_names():
    deformdetr = build_model(tiny_config(EXPERIMENTS / "deformdetr.yaml", **TINY_DETR))
    assert [n for n, _ in _model().named_parameters()] == [n for n, _ in deformdetr.named_parameters()]
    cfg = load_experiment("cvanet", experiments_dir=EXPERIMENTS)
    assert (cfg.solver.weight_decay, cfg.solver.clip_value, cfg.solver.lr_multipliers) == (
        1e-4, None, {"backbone": 0.1, "reference_points": 0.1, "sampling_offsets": 0.1}
    )


# -------------------------------------------------------------------------------- training
def test_training_fuses_each_memory_map_with_the_local_map_of_its_rank_and_supervises_local_frames():
    model = _model().train()
    clip = lesion_clip(6, seed=4, empty_frames=(0, 1))  # memory frames 0-2 and local 3-5
    images = model.normalise(clip["images"])
    features = model.backbone(images)
    seen = _spy(model)
    predictions, frames = model.predict_clip(features)
    assert frames == [3, 4, 5]
    torch.testing.assert_close(seen[0], channel_pair_fuse(features[:3], features[3:]), rtol=0, atol=0)
    # an odd clip pairs its first and last T // 2 frames
    _, frames = model.predict_clip(features[:5])
    torch.testing.assert_close(seen[1], channel_pair_fuse(features[:2], features[3:5]), rtol=0, atol=0)
    assert frames == [3, 4]
    with pytest.raises(ValueError, match="pairs"):
        model.predict_clip(features[:1])
    # the losses are those of the local frames' boxes (the memory frames' empty GT is not used)
    torch.manual_seed(1)
    losses = model([clip])
    torch.manual_seed(1)
    expected = model.criterion(model.predict_clip(model.backbone(images))[0], model.set_targets(clip, images)[3:])
    assert all(torch.equal(losses[k], expected[k]) for k in expected)


# ------------------------------------------------------------------------------------- test
@pytest.mark.parametrize("after", [0, 2])
def test_each_frame_is_fused_with_the_frame_partner_offset_before_clamped_to_its_window(after):
    window = dict(model__temporal__interval_pre_test=3, model__temporal__interval_after_test=after)
    model = _model(**window, model__cva_net__partner_offset=2).eval()
    frames = _video(7, seed=5)
    with torch.no_grad():
        maps = [model.backbone(model.normalise(f[None])) for f in frames]
        seen = _spy(model)
        run_online(model, frames)
    assert len(seen) == 7
    for t, fused in enumerate(seen):
        torch.testing.assert_close(fused, channel_pair_fuse(maps[max(t - 2, 0)], maps[t]), rtol=0, atol=0)
    # partner offset beyond the window (8 > 3 earlier frames): the oldest buffered frame, t - 3
    model.partner_offset = 8
    seen.clear()
    with torch.no_grad():
        run_online(model, frames)
    for t, fused in enumerate(seen):
        torch.testing.assert_close(fused, channel_pair_fuse(maps[max(t - 3, 0)], maps[t]), rtol=0, atol=0)


def test_temporal_ablation_fuses_the_frame_with_itself():
    model = _model(model__temporal__aggregate_test=False).eval()
    frames = _video(4, seed=6)
    with torch.no_grad():
        maps = [model.backbone(model.normalise(f[None])) for f in frames]
        seen = _spy(model)
        run_online(model, frames)
    for t, fused in enumerate(seen):
        torch.testing.assert_close(fused, channel_pair_fuse(maps[t], maps[t]), rtol=0, atol=0)


def test_inference_is_causal_bit_for_bit():
    model = _model(model__cva_net__partner_offset=2).eval()
    video, changed = _video(8, seed=0), _video(8, seed=1)
    t = 4
    same = same_when_later_frames_change(model, video, changed, t)
    assert all(same[: t + 1]) and not any(same[t + 1 :])


def test_reset_isolates_videos_the_original_leaked_the_previous_videos_maps():
    model = _model(model__cva_net__partner_offset=2).eval()
    first, second = _video(5, seed=2), _video(5, seed=3)
    with torch.no_grad():
        fresh = run_online(_model(model__cva_net__partner_offset=2).eval(), second)  # same weights, never used
        run_online(model, first)
        assert all(same_detections(a, b) for a, b in zip(run_online(model, second), fresh))
        # without reset (the original) the first frames of the second video fuse with the first's maps
        run_online(model, first)
        leaked = [model.infer_frame(f, original_size=(SIZE, SIZE)) for f in second]
    assert not any(same_detections(a, b) for a, b in zip(leaked[:2], fresh[:2]))
    assert all(same_detections(a, b) for a, b in zip(leaked[2:], fresh[2:]))  # from frame 2 on the partner is its own


# ---------------------------------------------------------------------------------- overfit
def test_overfit_one_clip_lowers_the_box_losses_and_finds_the_lesion():
    model = _model().train()
    clip = lesion_clip(4, size=128, lesion=40)  # 2 memory + 2 local frames
    history = overfit_history(model, clip, steps=40, lr=5e-4)
    for term in ("loss_set_l1", "loss_set_giou", "loss_set_cls"):
        start, end = history[0][term], sum(step[term] for step in history[-5:]) / 5
        assert end <= 0.6 * start, (term, start, end)
    model.eval().reset()
    with torch.no_grad():
        outputs = [model.infer_frame(f, original_size=(128, 128)) for f in clip["images"]]
    best = outputs[-1]["boxes"][:1]  # frame 3, fused with frame 0 (the oldest of its window)
    assert box_iou(best, clip["boxes"][-1]).item() > 0.5
