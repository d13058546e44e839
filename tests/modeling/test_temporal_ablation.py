"""The temporal ablation (``model.temporal.aggregate_test: false``): with it, every temporal
aggregation sees only the classified frame, checked against computations on that frame alone;
without it (the default), the heads are what they were."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from modeltoy import lesion_clip, tiny_config
from roitoy import HEAD_KWARGS, SIZE, video_frames

from ultradet.modeling import build_model
from ultradet.modeling.layers.relation import geometric_embedding
from ultradet.modeling.meta_arch.fgfa import FGFARCNN
from ultradet.modeling.registry import ROI_HEADS

SELSA_KWARGS = {**{k: v for k, v in HEAD_KWARGS.items() if not k.startswith("relation")}, "selsa_layers": 2}
WINDOW = dict(interval_pre_test=3, interval_after_test=0)


def make_head(name: str, **kwargs):
    torch.manual_seed(0)
    head_kwargs = SELSA_KWARGS if name == "selsa" else HEAD_KWARGS
    return ROI_HEADS.get(name)(**head_kwargs, **kwargs).eval()


def run_video(head, frames) -> list[dict]:
    head.reset()
    with torch.no_grad():
        outputs = [head.forward_frame(*frame) for frame in frames]
        return [out for out in outputs if out is not None] + head.flush()


def assert_same_detections(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x["scores"], y["scores"], rtol=0, atol=1e-6)
        torch.testing.assert_close(x["boxes"], y["boxes"], rtol=0, atol=1e-4)


def differs(a: dict, b: dict) -> bool:
    return a["scores"].shape != b["scores"].shape or not torch.allclose(a["scores"], b["scores"], atol=1e-4)


@pytest.mark.parametrize("name", ["relation", "mega"])
def test_relation_sees_only_the_classified_frame_as_relationnet_does(name):
    """BasicDet's (and MEGA's) relation layers, switched off, relate each frame's RoIs to each
    other only (MEGA: no memory either): the RelationNet head with the same weights."""
    video = video_frames(6, 5)
    ablated = make_head(name, **WINDOW, aggregate_test=False)
    off = run_video(ablated, video)
    with torch.no_grad():
        alone = []
        for features, proposals, _ in video:
            boxes = proposals["boxes"]
            alone.append(ablated.predict(ablated.relation(ablated.box_encoder(features, [boxes]), boxes), boxes, (SIZE, SIZE)))
    assert_same_detections(off, alone)
    single = ROI_HEADS.get("frame_relation")(**HEAD_KWARGS).eval()
    single.load_state_dict(ablated.state_dict())
    assert_same_detections(off, run_video(single, video))
    # The default head aggregates: from the second frame on its detections differ.
    on = run_video(make_head(name, **WINDOW), video)
    assert_same_detections(on[:1], off[:1])
    assert all(differs(a, b) for a, b in zip(on[1:], off[1:]))


def test_selsa_sees_only_the_classified_frame():
    video = video_frames(5, 5)
    head = make_head("selsa", **WINDOW, aggregate_test=False)
    off = run_video(head, video)
    with torch.no_grad():
        for (features, proposals, _), out in zip(video, off):
            x = head.selsa(head.box_encoder(features, [proposals["boxes"]]))
            assert_same_detections([out], [head.predict(x, proposals["boxes"], (SIZE, SIZE))])
    on = run_video(make_head("selsa", **WINDOW), video)
    assert all(not torch.equal(a["scores"], b["scores"]) for a, b in zip(on[1:], off[1:]))


def ntca_by_hand(head, features: torch.Tensor, boxes: torch.Tensor) -> dict:
    """UltraDet's head on one frame alone, written out: with ``x0`` the pooled RoI vectors, per
    layer ``x <- LayerNorm(x + W_o (W_v x0 + b_v) + b_o)`` (attention over one key, the RoI's own
    pooled vector: weight 1), then the relation layer over the frame's RoIs (geometry of its own
    box pairs)."""
    x0 = x = head.box_encoder(features, [boxes])
    embedding = geometric_embedding(boxes, boxes, head.d_model)
    d = head.d_model
    for ntca, relation in zip(head.ntca, head.relation.layers):
        attention = ntca.attention
        value = F.linear(x0, attention.in_proj_weight[2 * d :], attention.in_proj_bias[2 * d :])
        x = ntca.norm(x + attention.out_proj(value))
        x = relation(x, embedding)
    return head.predict(x, boxes, (SIZE, SIZE))


def test_ntca_context_is_each_rois_own_vector_and_no_flow_runs():
    video = video_frames(6, 5)
    head = make_head("ntca", **WINDOW, context_step=2, aggregate_test=False)
    calls = []
    head.flow.pairs = lambda *args: calls.append(args)
    head.flow.prepare = lambda images: calls.append(images)
    off = run_video(head, video)
    assert calls == [] and len(head.keyframes) == 0
    with torch.no_grad():
        expected = [ntca_by_hand(head, features, proposals["boxes"]) for features, proposals, _ in video]
    assert_same_detections(off, expected)


def test_ntca_ablation_is_what_the_first_frame_of_a_video_sees():
    """Frame 0 is its own only keyframe: its context is its own map warped by its flow to itself
    (zero), i.e. its own RoI vectors; the ablation gives every frame that situation."""
    video = video_frames(6, 5)
    on = run_video(make_head("ntca", **WINDOW, context_step=2), video)
    off = run_video(make_head("ntca", **WINDOW, context_step=2, aggregate_test=False), video)
    # Up to the rounding of warping by a zero flow (bilinear sampling at the grid points).
    torch.testing.assert_close(on[0]["scores"], off[0]["scores"], rtol=0, atol=1e-5)
    assert all(differs(a, b) for a, b in zip(on[1:], off[1:]))


@pytest.mark.parametrize("name", ["relation", "selsa", "mega", "ntca"])
def test_ablation_drops_the_lookahead(name):
    head = make_head(name, interval_pre_test=2, interval_after_test=2, aggregate_test=False)
    assert head.lookahead == 0
    with torch.no_grad():
        assert all(head.forward_frame(*frame) is not None for frame in video_frames(4, 3))
    assert make_head(name, interval_pre_test=2, interval_after_test=2).lookahead == 2


@pytest.mark.parametrize("name", ["relation", "selsa", "mega", "ntca"])
def test_default_is_the_aggregating_head(name):
    """Without the switch (default True) a head is bit-identical to one told to aggregate."""
    video = video_frames(5, 4)
    default, explicit = run_video(make_head(name, **WINDOW), video), run_video(make_head(name, **WINDOW, aggregate_test=True), video)
    for a, b in zip(default, explicit):
        assert all(torch.equal(a[k], b[k]) for k in a)


def _run_model(model, frames) -> list[dict]:
    model.reset()
    with torch.no_grad():
        outputs = [model.infer_frame(image, original_size=(SIZE, SIZE)) for image in frames]
        return [out for out in outputs if out is not None] + model.flush()


def test_fgfa_ablation_is_the_detector_on_each_frames_own_map():
    fgfa_cfg = dict(model__meta_architecture="fgfa", model__roi_heads__name="single_frame", model__temporal__interval_after_test=1)
    torch.manual_seed(0)
    fgfa = build_model(tiny_config(**fgfa_cfg)).eval()
    ablated = build_model(tiny_config(**fgfa_cfg, model__temporal__aggregate_test=False)).eval()
    ablated.load_state_dict(fgfa.state_dict())
    plain = build_model(tiny_config(model__roi_heads__name="single_frame")).eval()
    plain.load_state_dict({k: v for k, v in fgfa.state_dict().items() if not k.startswith(("embed.", "flow."))})
    frames = list(lesion_clip(4, seed=0)["images"])
    assert isinstance(ablated, FGFARCNN) and ablated.lookahead == 0 and fgfa.lookahead == 1
    off, on = _run_model(ablated, frames), _run_model(fgfa, frames)
    assert_same_detections(off, _run_model(plain, frames))
    assert any(differs(a, b) for a, b in zip(on, off))


@pytest.mark.parametrize(
    "overrides, temporal",
    [
        (dict(model__roi_heads__name="single_frame"), False),
        (dict(model__roi_heads__name="frame_relation"), False),
        (dict(model__roi_heads__name="relation"), True),
        (dict(model__roi_heads__name="ntca"), True),
        (dict(model__meta_architecture="fgfa", model__roi_heads__name="single_frame"), True),
        (dict(model__meta_architecture="track_one_stage", model__dense_head__name="yolox"), False),
    ],
)
def test_models_say_whether_the_ablation_changes_them(overrides, temporal):
    assert build_model(tiny_config(**overrides)).temporal_aggregation is temporal


def test_config_switch_reaches_the_head():
    model = build_model(tiny_config(model__roi_heads__name="ntca", model__temporal__aggregate_test=False))
    head = model.roi_heads
    assert head.aggregate_test is False and (head.history.before, head.history.after) == (0, 0)
    assert build_model(tiny_config(model__roi_heads__name="ntca")).roi_heads.history.before == 3
