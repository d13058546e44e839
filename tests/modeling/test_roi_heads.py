"""The RoI heads' shared contract (spec 3.4): sampling, losses, inference output, registry."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from roitoy import HEAD_KWARGS, SIZE, clip_inputs, video_frames

from ultradet.config import load_config
from ultradet.modeling.registry import ROI_HEADS
from ultradet.modeling.roi_heads import build_roi_heads  # registers the heads
from ultradet.modeling.roi_heads.fast_rcnn import BACKGROUND, LESION, fast_rcnn_losses
from ultradet.modeling.roi_heads.sampling import RoISampler

HEADS = sorted(ROI_HEADS)  # every registered head meets the same contract
SINGLE_KWARGS = {k: v for k, v in HEAD_KWARGS.items() if not k.startswith("relation")}


# Heads without the relation module take the shared settings minus the relation ones.
HEAD_SPECIFIC = {"single_frame": SINGLE_KWARGS, "selsa": {**SINGLE_KWARGS, "selsa_layers": 2}}


def make_head(name: str):
    torch.manual_seed(0)
    return ROI_HEADS.get(name)(**HEAD_SPECIFIC.get(name, HEAD_KWARGS))


def test_sampler_prepends_gt_labels_and_targets():
    torch.manual_seed(0)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    sampler = RoISampler(batch_size_per_image=4, positive_fraction=0.5, fg_iou_thresh=0.5, box_coder=coder)
    gt = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    proposals = torch.tensor([[10.0, 10.0, 30.0, 32.0], [40.0, 40.0, 60.0, 60.0], [0.0, 0.0, 5.0, 5.0]])
    (s,) = sampler([{"boxes": proposals}], [{"boxes": gt}])
    # 2 foreground (the GT itself and the close proposal), 2 background: 4 = batch size.
    assert s.labels.tolist().count(LESION) == 2 and s.labels.tolist().count(BACKGROUND) == 2
    assert s.is_gt.sum() == 1 and torch.equal(s.boxes[s.is_gt][0], gt[0])
    fg = s.labels == LESION
    decoded = coder.decode_single(s.regression_targets[fg], s.boxes[fg])
    assert torch.allclose(decoded, gt.expand_as(decoded), atol=1e-4)
    assert torch.all(s.regression_targets[~fg] == 0)


def test_sampler_without_gt_gives_background_only():
    torch.manual_seed(0)
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    sampler = RoISampler(batch_size_per_image=4, positive_fraction=0.5, fg_iou_thresh=0.5, box_coder=coder)
    (s,) = sampler([{"boxes": torch.tensor([[0.0, 0.0, 9.0, 9.0]] * 6)}], [{"boxes": torch.zeros(0, 4)}])
    assert len(s.labels) == 4 and torch.all(s.labels == BACKGROUND) and not s.is_gt.any()


def test_losses_l1_is_normalised_by_all_sampled_rois():
    logits = torch.zeros(4, 2)
    deltas = torch.ones(4, 4)
    labels = torch.tensor([LESION, BACKGROUND, BACKGROUND, BACKGROUND])
    losses = fast_rcnn_losses(logits, deltas, labels, torch.zeros(4, 4))
    assert losses["loss_box_reg"].item() == pytest.approx(4.0 / 4)  # one fg RoI, |1| x 4 coords
    assert losses["loss_cls"].item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


@pytest.mark.parametrize("name", HEADS)
def test_forward_train_losses_are_finite_and_backpropagate(name):
    head = make_head(name).train()
    features, proposals, targets, images = clip_inputs(3, 6, gt_per_frame=[1, 0, 2])
    features.requires_grad_(True)
    losses = head.forward_train(features, proposals, targets, images)
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    assert losses["loss_box_reg"] > 0  # frames 0 and 2 have foreground RoIs
    sum(losses.values()).backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


@pytest.mark.parametrize("name", HEADS)
def test_forward_train_clip_without_any_gt(name):
    head = make_head(name).train()
    features, proposals, targets, images = clip_inputs(3, 6, gt_per_frame=[0, 0, 0])
    losses = head.forward_train(features, proposals, targets, images)
    assert losses["loss_box_reg"].item() == 0.0 and torch.isfinite(losses["loss_cls"])


@pytest.mark.parametrize("name", HEADS)
def test_forward_frame_outputs_clipped_sorted_detections(name):
    head = make_head(name).eval()
    head.reset()
    with torch.no_grad():
        for features, proposals, image in video_frames(3, 6):
            out = head.forward_frame(features, proposals, image)
            assert set(out) == {"boxes", "scores", "labels"}
            n = len(out["scores"])
            assert 0 < n <= 6 and out["boxes"].shape == (n, 4) and out["labels"].dtype == torch.long
            assert torch.all(out["labels"] == LESION)
            assert torch.all((out["boxes"] >= 0) & (out["boxes"] <= SIZE))
            assert torch.all(out["scores"][:-1] >= out["scores"][1:])
            assert torch.all((out["scores"] > 0) & (out["scores"] < 1))


def test_score_threshold_and_detections_per_image():
    head = ROI_HEADS.get("single_frame")(**SINGLE_KWARGS, score_thresh_test=0.99).eval()
    features, proposals, image = video_frames(1, 6)[0]
    assert len(head.forward_frame(features, proposals, image)["boxes"]) == 0  # init scores ~ 0.5
    head = ROI_HEADS.get("single_frame")(**SINGLE_KWARGS, detections_per_image=2, nms_thresh_test=1.0).eval()
    assert len(head.forward_frame(features, proposals, image)["boxes"]) == 2


@pytest.mark.parametrize("name", HEADS)
def test_from_config_builds_registered_head(name):
    overrides = {"model.roi_heads.name": name, "model.roi_heads.d_model": 32, "model.relation.relation_heads": 4}
    cfg = load_config(overrides=overrides)
    head = build_roi_heads(cfg, in_channels=64, stride=8)
    assert isinstance(head, ROI_HEADS.get(name)) and head.d_model == 32
    # Channels and stride come from the backbone, not from constants.
    assert head.box_encoder.res5[0].conv1.in_channels == 64 and head.box_encoder.stride == 8


# ---------------------------------------------------------------------------- test-time buffers
IMAGE_HEADS = ("single_frame", "frame_relation")  # every frame on its own
TEMPORAL = [name for name in HEADS if name not in IMAGE_HEADS]


def run_video(head, frames) -> list[dict]:
    head.reset()
    with torch.no_grad():
        return [head.forward_frame(*frame) for frame in frames]


@pytest.mark.parametrize("name", TEMPORAL)
def test_later_frames_do_not_change_earlier_outputs(name):
    head = make_head(name).eval()
    video = video_frames(6, 5, seed=0)
    other = video[:3] + video_frames(3, 5, seed=1)
    for a, b in zip(run_video(head, video)[:3], run_video(head, other)[:3]):
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", TEMPORAL)
def test_reset_isolates_videos(name):
    head = make_head(name).eval()
    video_a, video_b = video_frames(4, 5, seed=0), video_frames(4, 5, seed=1)
    fresh = run_video(head, video_b)
    run_video(head, video_a)
    after_a = run_video(head, video_b)  # run_video starts with reset()
    for a, b in zip(fresh, after_a):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # Without reset, video A's frames are context: the outputs differ.
    with torch.no_grad():
        leaked = [head.forward_frame(*frame) for frame in video_b]
    assert not torch.equal(leaked[0]["scores"], fresh[0]["scores"])


def test_relation_buffer_matches_uncached_relation_and_pools_each_frame_once():
    head = ROI_HEADS.get("relation")(**HEAD_KWARGS, interval_pre_test=2).eval()
    video = video_frames(5, 4)
    calls = []
    head.box_encoder.register_forward_hook(lambda m, args, out: calls.append(len(out)))
    outputs = run_video(head, video)
    assert calls == [4] * 5  # only the current frame's proposals are pooled
    assert len(head.history) == 3
    # Frame 4 must equal a from-scratch relation over frames 2..4.
    with torch.no_grad():
        features = torch.cat([f for f, _, _ in video[2:]])
        boxes = [p["boxes"] for _, p, _ in video[2:]]
        x = head.relation(head.box_encoder(features, boxes), torch.cat(boxes))[-4:]
        expected = head.predict(x, boxes[-1], (SIZE, SIZE))
    assert torch.allclose(outputs[-1]["scores"], expected["scores"], atol=1e-6)
    assert torch.allclose(outputs[-1]["boxes"], expected["boxes"], atol=1e-4)
