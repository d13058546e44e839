"""PTSEFormer (baselines spec 3.4): its per-pixel progressive blocks by hand, the STAM reference,
the cheap test path against the original's full recomputation, causality, reset, and a short
overfit on a tiny clip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

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
from ultradet.modeling import build_model
from ultradet.modeling.meta_arch import PTSEFormer
from ultradet.modeling.transformer.progressive import GatedBlock, PlainBlock

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
TINY_PTSE = dict(**TINY_DETR, model__ptseformer__num_heads=4, model__ptseformer__dim_feedforward=64)
SIZES = dict(d_model=8, num_heads=2, dim_feedforward=16, dropout=0.0)


def _model(seed: int = 0, **overrides) -> PTSEFormer:
    torch.manual_seed(seed)
    return build_model(tiny_config(EXPERIMENTS / "ptseformer.yaml", **{**TINY_PTSE, **overrides}))


def _value_then_output(attn: torch.nn.MultiheadAttention, memory: torch.Tensor) -> torch.Tensor:
    """``out_proj(v_proj(memory))``: attention to a single key per query, whose softmax weight is 1."""
    d = memory.shape[-1]
    value = memory @ attn.in_proj_weight[2 * d :].T + attn.in_proj_bias[2 * d :]
    return attn.out_proj(value)


# ------------------------------------------------------------------------------- the blocks
def test_plain_block_on_one_memory_frame_injects_its_value_per_pixel():
    torch.manual_seed(0)
    block = PlainBlock(**SIZES).eval()
    x, memory = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    expected = block.ffn(block.norm(x + _value_then_output(block.attn, memory)))
    torch.testing.assert_close(block(x, memory), expected)


def test_gated_block_mixes_memory_and_query_by_the_gate():
    torch.manual_seed(0)
    block = GatedBlock(**SIZES).eval()
    x, memory = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    g = torch.sigmoid(torch.cat((x, memory), -1) @ block.gate.weight.T + block.gate.bias)
    mixed = (1 - g) * memory + g * x
    expected = block.ffn(block.norm(mixed + _value_then_output(block.attn, memory)))
    torch.testing.assert_close(block(x, memory, memory), expected)
    # A shut gate passes the memory on, an open one the query.
    with torch.no_grad():
        block.gate.weight.zero_()
        for bias, kept in ((-100.0, memory), (100.0, x)):
            block.gate.bias.fill_(bias)
            torch.testing.assert_close(block(x, memory, memory), block.ffn(block.norm(kept + _value_then_output(block.attn, memory))))


@pytest.mark.parametrize("block_cls", [PlainBlock, GatedBlock])
def test_a_pixel_never_reads_another_pixel_of_the_memory(block_cls):
    torch.manual_seed(0)
    block = block_cls(**SIZES).eval()
    x = torch.randn(2, 6, 8, requires_grad=True)
    memory = torch.randn(4, 6, 8, requires_grad=True)  # 4 frames, 6 pixels
    out = block(x, memory) if block_cls is PlainBlock else block(x, memory, x)
    (out[:, 3] * torch.randn(8)).sum().backward()  # weighted: a LayerNorm output sums to a constant
    others = [p for p in range(6) if p != 3]
    assert (memory.grad[:, others] == 0).all() and (x.grad[:, others] == 0).all()
    assert (memory.grad[:, 3] != 0).any()  # and it does read its own pixel in every frame


def test_the_whole_progression_is_per_pixel():
    model = _model().eval()
    memory = torch.randn(3, 10, 32, requires_grad=True)
    out = model.progress(memory, memory, model.references(model.stam_outputs(memory)))
    (out[1, 4] * torch.randn(32)).sum().backward()  # weighted: a LayerNorm output sums to a constant
    assert (memory.grad[:, :4] == 0).all() and (memory.grad[:, 5:] == 0).all()
    assert (memory.grad[:, 4].abs().sum(-1) > 0).all()  # pixel 4 of every frame


# ------------------------------------------------------------------------------- STAM
def test_stam_sees_each_frame_alone_and_every_frame_is_a_reference():
    model = _model().eval()
    memory = torch.randn(3, 10, 32)
    stam = model.stam_outputs(memory)
    alone = torch.cat([model.stam(m[None], m[None], m[None]) for m in memory])
    torch.testing.assert_close(stam, alone)
    torch.testing.assert_close(model.references(stam), stam)  # fixed: R is [T, S, d]
    model.stam_last_frame_only = True  # the original's Bug: R is the last frame's, [1, S, d]
    torch.testing.assert_close(model.references(stam), stam[-1:])


def test_parameter_names_meet_the_lr_multipliers_only_where_the_original_does():
    model = _model()
    new = [n for n in model.state_dict() if n.split(".")[0] in ("stam", "tfam", "correlation", "gated_correlation")]
    assert new and not any(s in n for n in new for s in ("backbone", "reference_points", "sampling_offsets"))
    assert not any("reference_points1" in n or "pre_decoder" in n for n in model.state_dict())  # unused in the original


# ------------------------------------------------------------------------------- online inference
@pytest.mark.parametrize("overrides", [{}, {"model__ptseformer__stam_last_frame_only": True}, {"model__temporal__interval_after_test": 1}])
def test_answering_one_frame_gives_the_original_full_recomputation(overrides):
    cheap = _model(**overrides).eval()
    full = _model(**overrides, model__ptseformer__recompute_window=True).eval()
    full.load_state_dict(cheap.state_dict())
    frames = list(lesion_clip(6, seed=4)["images"])
    with torch.no_grad():
        a, b = run_online(cheap, frames), run_online(full, frames)
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        for key in ("boxes", "scores"):
            torch.testing.assert_close(x[key], y[key], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("recompute", [False, True])
def test_inference_is_causal_bit_for_bit(recompute):
    model = _model(model__ptseformer__recompute_window=recompute).eval()
    video, changed = list(lesion_clip(7, seed=0)["images"]), list(lesion_clip(7, seed=1)["images"])
    t = 4  # past the window of 3 earlier frames: the FIFO has dropped frames
    same = same_when_later_frames_change(model, video, changed, t)
    assert all(same[: t + 1]) and not all(same[t + 1 :])


def test_reset_isolates_videos_and_without_it_the_original_leak_shows():
    model = _model().eval()
    first, second = list(lesion_clip(4, seed=2)["images"]), list(lesion_clip(4, seed=3)["images"])
    fresh = run_online(model, second)
    run_online(model, first)
    assert all(same_detections(a, b) for a, b in zip(run_online(model, second), fresh))
    run_online(model, first)
    leaked = [model.infer_frame(image, original_size=(SIZE, SIZE)) for image in second]  # no reset: the leak
    assert not all(same_detections(a, b) for a, b in zip(leaked, fresh))


def test_temporal_ablation_answers_each_frame_as_a_video_of_one_frame():
    model = _model(model__temporal__aggregate_test=False).eval()
    frames = list(lesion_clip(3, seed=5)["images"])
    together = run_online(model, frames)
    assert all(same_detections(a, run_online(model, [f])[0]) for a, f in zip(together, frames))


# ------------------------------------------------------------------------------- training
def test_overfit_one_clip_lowers_the_box_losses_and_finds_the_lesion():
    model = _model(model__detr__dropout=0.0, model__ptseformer__dropout=0.0).train()
    clip = lesion_clip(3, size=128, lesion=40)
    history = overfit_history(model, clip, steps=40, lr=5e-4)
    for term in ("loss_set_l1", "loss_set_giou"):
        start, end = history[0][term], sum(step[term] for step in history[-5:]) / 5
        assert end <= 0.6 * start, (term, start, end)
    model.eval().reset()
    first = model.infer_frame(clip["images"][0], original_size=(128, 128))
    assert box_iou(first["boxes"][:1], clip["boxes"][0]).item() > 0.5
