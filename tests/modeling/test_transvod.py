"""TransVOD (baselines spec 3.2): its slot-wise temporal attention against a brute-force loop and
its frame/slot isolation, the temporal decoder's own-memory rule, the temporal head's start and
loss weights (the original's 1/1/1 Bug fixed), causal and reset-isolated online inference, and a
short overfit."""

from __future__ import annotations

import math
from pathlib import Path

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

from ultradet.modeling import build_model
from ultradet.modeling.meta_arch.transvod import TransVOD
from ultradet.modeling.set_prediction import SetCriterion
from ultradet.modeling.transformer.deformable import inverse_sigmoid
from ultradet.modeling.transformer.temporal_query import SlotAttention, TemporalQueryEncoderLayer

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def _model(seed: int = 0, **overrides) -> TransVOD:
    torch.manual_seed(seed)
    return build_model(tiny_config(EXPERIMENTS / "transvod.yaml", **TINY_DETR, model__detr__dropout=0.0, **overrides))


# ------------------------------------------------------------------ the temporal query encoder
def test_slot_attention_is_per_slot_softmax_over_frames():
    torch.manual_seed(0)
    attention = SlotAttention(d_model=8, num_heads=1, dropout=0.0)
    hidden, pos = torch.randn(3, 4, 8), torch.randn(4, 8).expand(3, -1, -1)  # same query_pos in every frame
    w_q, w_k, w_v = attention.attn.in_proj_weight.split(8)
    b_q, b_k, b_v = attention.attn.in_proj_bias.split(8)
    expected = torch.empty(3, 4, 8)
    for slot in range(4):
        x = hidden[:, slot] + pos[:, slot]  # [T, d]: this slot in every frame
        weights = ((x @ w_q.T + b_q) @ (x @ w_k.T + b_k).T / math.sqrt(8)).softmax(-1)  # [T, T]
        expected[:, slot] = attention.attn.out_proj(weights @ (hidden[:, slot] @ w_v.T + b_v))
    torch.testing.assert_close(attention(hidden, pos), expected, rtol=1e-5, atol=1e-5)


class NoAttention(torch.nn.Module):
    """An ``nn.MultiheadAttention`` stand-in that attends to nothing (adds nothing to the residual)."""

    def forward(self, query, key, value, need_weights):
        return torch.zeros_like(value), None


def test_slot_attention_mixes_frames_within_a_slot_never_across_slots():
    torch.manual_seed(0)
    hidden, pos = torch.randn(4, 5, 16), torch.randn(5, 16).expand(4, -1, -1)
    changed = hidden.clone()
    changed[3, 2] += torch.randn(16)  # slot 2 of frame 3 (not a constant shift, which LayerNorm removes)
    others = [0, 1, 3, 4]
    attention = SlotAttention(d_model=16, num_heads=4, dropout=0.0)
    before, after = attention(hidden, pos), attention(changed, pos)
    torch.testing.assert_close(after[:, others], before[:, others], rtol=0, atol=1e-6)
    assert not torch.allclose(after[0, 2], before[0, 2])  # frame 0's slot 2 sees frame 3's slot 2
    # The whole layer too, its per-frame query self-attention (a) bypassed: (b) and the FFN alone.
    layer = TemporalQueryEncoderLayer(d_model=16, num_heads=4, dim_feedforward=32, dropout=0.0)
    layer.self_attn = NoAttention()
    before, after = layer(hidden, pos), layer(changed, pos)
    torch.testing.assert_close(after[:3][:, others], before[:3][:, others], rtol=0, atol=1e-6)
    assert not torch.allclose(after[0, 2], before[0, 2])


# ------------------------------------------------------------------ the temporal decoder and head
def test_temporal_stages_have_the_configured_depths_and_the_original_head_start():
    model = _model(model__transvod__query_encoder_layers=3, model__transvod__temporal_decoder_layers=2)
    assert len(model.query_encoder.layers) == 3 and len(model.temporal_decoder) == 2
    default = _model()
    assert len(default.query_encoder.layers) == 2 and len(default.temporal_decoder) == 1
    torch.testing.assert_close(default.temporal_class_head.bias, torch.full((1,), -math.log(99)))
    last = default.temporal_box_head.layers[-1]
    assert (last.weight == 0).all() and last.bias.tolist() == [0.0, 0.0, -2.0, -2.0]
    # At the start the temporal boxes are the last spatial layer's, w and h shrunk by the -2 bias.
    stage = default.spatial(default.backbone(default.normalise(lesion_clip(2)["images"])))
    reference = stage.boxes[-1]
    boxes = default.temporal(stage)["boxes"]
    torch.testing.assert_close(boxes[..., :2], reference[..., :2])
    torch.testing.assert_close(boxes[..., 2:], (inverse_sigmoid(reference[..., 2:]) - 2).sigmoid())


def test_temporal_decoder_reads_each_frames_own_memory_around_detached_spatial_boxes():
    model = _model().eval()
    with torch.no_grad():
        stage = model.spatial(model.backbone(model.normalise(lesion_clip(3)["images"])))
        memory = stage.encoded.memory.clone()
        memory[1] += 1.0
        before = model.temporal(stage)
        after = model.temporal(stage._replace(encoded=stage.encoded._replace(memory=memory)))
    for key in ("logits", "boxes"):
        torch.testing.assert_close(after[key][[0, 2]], before[key][[0, 2]], rtol=0, atol=1e-6)
    # (The box MLP's last layer starts at zero, so only the logits can show frame 1's change.)
    assert not torch.allclose(after["logits"][1], before["logits"][1])
    # The reference is detached: the temporal boxes' losses do not reach the spatial box heads
    # through it (only through the shared queries and memory).
    model.train()
    stage = model.spatial(model.backbone(model.normalise(lesion_clip(2)["images"])))
    model.temporal(stage)["boxes"].sum().backward()
    assert all(p.grad is None for p in model.box_heads[-1].parameters())


def test_new_parameter_names_meet_the_lr_multipliers_only_where_the_originals_do():
    new = ("query_encoder", "temporal_decoder", "temporal_class_head", "temporal_box_head")
    names = [n for n, _ in _model().named_parameters() if n.split(".")[0] in new]
    assert names and not any("backbone" in n or "reference_points" in n for n in names)
    # The temporal decoder's deformable attention is the original's, offsets at lr x0.1.
    assert {n for n in names if "sampling_offsets" in n} == {
        "temporal_decoder.0.cross_attn.sampling_offsets.weight", "temporal_decoder.0.cross_attn.sampling_offsets.bias"
    }


# ------------------------------------------------------------------ training
def test_temporal_losses_train_with_the_configured_weights_not_the_originals_1_1_1():
    model = _model().train()
    clip = lesion_clip(3, empty_frames=(1,))
    losses = model([clip])
    images = model.normalise(clip["images"])
    predictions, frames = model.predict_clip(model.backbone(images))
    assert frames == [0, 1, 2]  # every frame supervised
    targets = model.set_targets(clip, images)
    unweighted = SetCriterion(class_loss="focal", loss_weights=(1.0, 1.0, 1.0))([predictions[-1]], targets)
    for term, weight in (("cls", 2.0), ("l1", 5.0), ("giou", 2.0)):
        torch.testing.assert_close(losses[f"loss_set_{term}_tmp"], weight * unweighted[f"loss_set_{term}"])
    spatial = model.criterion(predictions[:-1], targets)
    assert set(losses) == set(spatial) | {f"loss_set_{t}_tmp" for t in ("cls", "l1", "giou")}
    assert all(torch.equal(losses[k], spatial[k]) for k in spatial)  # final + auxiliary spatial layers
    assert {f"loss_set_cls_d{l}" for l in range(3)} <= set(losses)


def test_training_clip_is_one_temporal_set():
    # Frame 0's temporal prediction depends on the other frames of its clip, its spatial ones do not.
    model = _model().eval()
    a, b = lesion_clip(3, seed=0)["images"], lesion_clip(3, seed=1)["images"]
    b[0] = a[0]
    with torch.no_grad():
        pa = model.predict_clip(model.backbone(model.normalise(a)))[0]
        pb = model.predict_clip(model.backbone(model.normalise(b)))[0]
    torch.testing.assert_close(pa[-2]["boxes"][0], pb[-2]["boxes"][0], rtol=0, atol=1e-6)
    assert not torch.allclose(pa[-1]["logits"][0], pb[-1]["logits"][0])


# The temporal head starts from the spatial boxes with w and h shrunk by its -2 bias (GIoU loss
# near its maximum) and catches up only once the spatial boxes settle: more steps at a higher lr
# than DeformDETR's overfit (test_detr.py).
def test_overfit_one_clip_lowers_the_losses_and_finds_the_lesion():
    clip = lesion_clip(3, size=128, lesion=40)
    model = _model().train()
    history = overfit_history(model, clip, steps=60, lr=2e-3)
    for term in ("loss_set_l1", "loss_set_giou", "loss_set_l1_tmp", "loss_set_giou_tmp", "loss_set_cls_tmp"):
        start, end = history[0][term], sum(step[term] for step in history[-5:]) / 5
        assert end <= 0.6 * start, (term, start, end)
    model.eval().reset()
    for t, image in enumerate(clip["images"]):
        best = model.infer_frame(image, original_size=(128, 128))["boxes"][:1]
        assert box_iou(best, clip["boxes"][t]).item() > 0.5, t


# ------------------------------------------------------------------ online inference
def test_window_prediction_is_the_training_sets():
    # With the whole video in the window, frame t's answer is the temporal head's frame t of the
    # clip predicted as one set: the buffered items are the spatial stage of each frame.
    model = _model().eval()
    images = lesion_clip(3)["images"]
    normalised = model.normalise(images)
    with torch.no_grad():
        clip = model.predict_clip(model.backbone(normalised))[0]
        items = [model.frame_item(model.backbone(normalised[t : t + 1])) for t in range(3)]
        window = model.predict_window(items, 2)
    assert len(window) == len(clip) == 5  # 4 spatial decoder layers, then the temporal head
    for got, expected in zip(window, clip):
        torch.testing.assert_close(got["logits"], expected["logits"][2:], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got["boxes"], expected["boxes"][2:], rtol=1e-4, atol=1e-4)


def test_inference_is_causal_bit_for_bit():
    model = _model().eval()
    video, changed = list(lesion_clip(7, seed=0)["images"]), list(lesion_clip(7, seed=1)["images"])
    t = 4  # past the window of 3 earlier frames
    same = same_when_later_frames_change(model, video, changed, t)
    assert all(same[: t + 1]) and not all(same[t + 1 :])


def test_reset_isolates_videos():
    model = _model().eval()
    first, second = list(lesion_clip(5, seed=2)["images"]), list(lesion_clip(5, seed=3)["images"])
    fresh = run_online(model, second)
    run_online(model, first)
    assert all(same_detections(a, b) for a, b in zip(run_online(model, second), fresh))
    # Without reset the previous video is temporal context: the original's leak would show here.
    leaked = [model.infer_frame(image, original_size=(SIZE, SIZE)) for image in second]
    assert not all(same_detections(a, b) for a, b in zip(leaked, fresh))
