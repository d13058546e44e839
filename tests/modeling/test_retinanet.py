"""RetinaNet's dense head (baselines spec 2.1): hand-computed losses, anchor labels against a
brute-force reading of detectron2's rules, the loss normaliser's average, the box coder, the
output layout, inference rules on scripted logits, an overfit, and the experiment file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou, sigmoid_focal_loss

from modeltoy import SIZE, TINY, lesion_clip, overfit_history
from ultradet.config import ConfigError, load_config
from ultradet.modeling import build_model
from ultradet.modeling.dense_heads import RetinaNetHead, build_dense_head
from ultradet.modeling.proposal_generator.anchors import label_anchors

RETINANET = Path(__file__).resolve().parents[2] / "experiments" / "retinanet.yaml"
GT = torch.tensor([[0.0, 0.0, 32.0, 32.0]])


def _head(**kwargs) -> RetinaNetHead:
    torch.manual_seed(0)
    return RetinaNetHead(anchor_sizes=(32.0,), anchor_aspect_ratios=(1.0,), **kwargs)


def _targets(*frames: list[list[float]]) -> list[dict]:
    return [
        {"boxes": torch.tensor(boxes).view(-1, 4), "labels": torch.zeros(len(boxes), dtype=torch.long)}
        for boxes in frames
    ]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


# ------------------------------------------------------------------------------------ losses
def test_losses_are_hand_computed_focal_and_l1_over_the_normaliser():
    # Anchors' IoU with the GT: 1 and 0.778 (foreground), 1/3 (ignored), 0 (background).
    anchors = torch.tensor([[0.0, 0, 32, 32], [4, 0, 36, 32], [16, 0, 48, 32], [100, 100, 132, 132]])
    logits = torch.tensor([[math.log(3.0), 0.0, 5.0, 0.0]])  # p = 0.75, 0.5, (ignored), 0.5
    losses = _head().losses(anchors, logits, torch.zeros(1, 4, 4), [{"boxes": GT}])
    # Focal loss -alpha_t (1 - p_t)^1.5 log p_t: fg p = 0.75 and 0.5, bg p = 0.5; the ignored
    # anchor (logit 5, a large loss as background) is left out.
    fg = 0.25 * 0.25**1.5 * math.log(4 / 3) + 0.25 * 0.5**1.5 * math.log(2)
    bg = 0.75 * 0.5**1.5 * math.log(2)
    normaliser = 0.9 * 100 + 0.1 * 2  # 2 foreground anchors
    torch.testing.assert_close(losses["loss_retinanet_cls"], torch.tensor((fg + bg) / normaliser))
    # Anchor [4, 0, 36, 32] -> GT: dx = (16 - 20) / 32, other deltas 0; predicted deltas are 0.
    torch.testing.assert_close(losses["loss_retinanet_reg"], torch.tensor(0.125 / normaliser))


def test_focal_loss_at_gamma_1_5_is_torchvisions_over_non_ignored_anchors():
    head = RetinaNetHead(anchor_sizes=(24.0, 48.0), anchor_aspect_ratios=(0.5, 1.0, 2.0))
    anchors = head.anchors((6, 6))
    g = torch.Generator().manual_seed(0)
    logits, deltas = 3 * torch.randn(2, len(anchors), generator=g), torch.randn(2, len(anchors), 4, generator=g)
    targets = _targets([[10, 12, 60, 50], [50, 40, 90, 95]], [[20, 20, 44, 80]])
    labels = torch.stack([label_anchors(anchors, t["boxes"], head.matcher)[0] for t in targets])
    valid, num_fg = labels >= 0, int((labels == 1).sum())
    assert 0 < num_fg and (labels == -1).any()
    expected = sigmoid_focal_loss(logits[valid], labels[valid], alpha=0.25, gamma=1.5, reduction="sum")
    loss = head.losses(anchors, logits, deltas, targets)["loss_retinanet_cls"]
    torch.testing.assert_close(loss, expected / (90 + 0.1 * num_fg))
    gamma_2 = sigmoid_focal_loss(logits[valid], labels[valid], alpha=0.25, gamma=2.0, reduction="sum")
    assert not torch.isclose(expected, gamma_2)  # the case tells gamma 1.5 from the paper's 2


# ----------------------------------------------------------------------------- anchor labels
def test_anchor_labels_on_a_drawn_case():
    gt = torch.tensor([[0.0, 0, 32, 32], [200, 200, 240, 210], [0, 0, 8, 32]])
    anchors = torch.tensor(
        [
            [0.0, 0, 32, 32],  # IoU 1 with GT 0: foreground
            [8, 0, 40, 32],  # 0.6: foreground
            [16, 0, 48, 32],  # 1/3: ignored
            [100, 100, 132, 132],  # 0: background
            [200, 190, 232, 222],  # 0.29 with GT 1, its best anchor: low-quality foreground
            [200, 198, 232, 230],  # 0.29 too: a tie, also foreground
            [210, 190, 242, 222],  # 0.27 with GT 1, not its best: background
        ]
    )
    labels, matched = label_anchors(anchors, gt, _head().matcher)
    torch.testing.assert_close(labels, torch.tensor([1.0, 1, -1, 0, 1, 1, 0]))
    # GT 2's best anchor is anchor 0 (IoU 0.25), which stays matched to GT 0, the GT of its own
    # highest IoU (detectron2's and torchvision's rule): GT 2 gets no anchor.
    torch.testing.assert_close(matched[[0, 1, 4, 5]], gt[[0, 0, 1, 1]])


def _d2_labels(iou: torch.Tensor, low: float, high: float) -> tuple[list[int], list[int]]:
    """detectron2's ``Matcher`` (labels [0, -1, 1], low-quality matches) as plain loops over a
    ``[K, N]`` IoU matrix: each anchor's label and matched GT index."""
    k, n = iou.shape
    matches, labels = [], []
    for j in range(n):
        column = [float(iou[i, j]) for i in range(k)]
        best = max(range(k), key=lambda i: (column[i], -i))  # first GT of highest IoU
        matches.append(best)
        labels.append(0 if column[best] < low else (-1 if column[best] < high else 1))
    for i in range(k):
        top = max(float(iou[i, j]) for j in range(n))
        for j in range(n):
            if float(iou[i, j]) == top:
                labels[j] = 1
    return labels, matches


@pytest.mark.parametrize("seed", range(4))
def test_anchor_labels_match_detectron2s_rules_by_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    anchors = RetinaNetHead(anchor_sizes=(16.0, 40.0), anchor_aspect_ratios=(0.5, 1.0, 2.0)).anchors((4, 5))
    corners = torch.rand(3, 2, generator=g) * 70
    gt = torch.cat([corners, corners + 6 + torch.rand(3, 2, generator=g) * 40], dim=1)
    labels, matched = label_anchors(anchors, gt, _head().matcher)
    expected_labels, expected_matches = _d2_labels(box_iou(gt, anchors), 0.3, 0.5)
    assert labels.tolist() == expected_labels
    fg = labels == 1
    torch.testing.assert_close(matched[fg], gt[torch.tensor(expected_matches)][fg])


def test_frames_without_gt_are_all_background():
    anchors = _head().anchors((4, 4))
    labels, _ = label_anchors(anchors, torch.zeros(0, 4), _head().matcher)
    assert torch.equal(labels, torch.zeros(len(anchors)))


# -------------------------------------------------------------------------- loss normaliser
def test_loss_normaliser_is_an_ema_of_foreground_counts_updated_once_per_training_forward():
    # 32-px anchors on a 4 x 4 grid of stride 16: a 32-px GT on the grid has exactly one
    # foreground anchor (its neighbours' IoU is 1/3 or less).
    head = _head()
    features = torch.randn(2, 256, 4, 4)
    one, two = [[0.0, 0, 32, 32]], [[0.0, 0, 32, 32], [16, 16, 48, 48]]
    expected = 100.0
    steps = [("train", (one, two), 3), ("train", ([], []), 0), ("eval", (two, two), 0), ("train", (two, two), 4)]
    for mode, frames, num_fg in steps:
        getattr(head, mode)()
        _, losses = head(features, (64, 64), _targets(*frames))
        if mode == "train":
            expected = 0.9 * expected + 0.1 * max(num_fg, 1)  # 90.3, 81.37, -, 73.633
        else:
            assert losses == {}
        torch.testing.assert_close(head.loss_normalizer, torch.tensor(expected))
    assert math.isclose(expected, 73.633, rel_tol=1e-9)


def test_loss_normaliser_is_checkpointed_and_a_resumed_head_continues_it():
    head = _head().train()
    features, targets = torch.randn(2, 256, 4, 4), _targets([[0.0, 0, 32, 32]], [])
    head(features, (64, 64), targets)
    state = head.state_dict()
    assert "loss_normalizer" in state and "cell_anchors" not in state
    resumed = _head().train()
    resumed.load_state_dict(state)
    _, expected = head(features, (64, 64), targets)
    _, losses = resumed(features, (64, 64), targets)
    assert all(torch.equal(losses[name], expected[name]) for name in expected)
    assert torch.equal(resumed.loss_normalizer, head.loss_normalizer)


def test_loss_normaliser_step_does_not_break_an_earlier_forwards_backward():
    # Gradient accumulation: two forwards, then one backward over both.
    head = _head().train()
    features = torch.randn(1, 256, 4, 4)
    total = sum(sum(head(features, (64, 64), _targets([[0.0, 0, 32, 32]]))[1].values()) for _ in range(2))
    total.backward()
    assert head.cls_score.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------- boxes and layout
def test_box_coder_hand_deltas_and_round_trip():
    anchor, gt = torch.tensor([[0.0, 0, 32, 32]]), torch.tensor([[8.0, 8, 40, 72]])
    coder = _head().box_coder
    torch.testing.assert_close(coder.encode_single(gt, anchor), torch.tensor([[0.25, 0.75, 0.0, math.log(2)]]))
    weighted = _head(bbox_reg_weights=(10.0, 10.0, 5.0, 5.0)).box_coder
    torch.testing.assert_close(weighted.encode_single(gt, anchor), torch.tensor([[2.5, 7.5, 0.0, 5 * math.log(2)]]))
    g = torch.Generator().manual_seed(0)
    anchors = RetinaNetHead().anchors((3, 3))
    corners = torch.rand(len(anchors), 2, generator=g) * 50
    boxes = torch.cat([corners, 60 + torch.rand(len(anchors), 2, generator=g) * 50], dim=1)
    torch.testing.assert_close(coder.decode_single(coder.encode_single(boxes, anchors), anchors), boxes)


def test_outputs_are_in_the_anchors_order():
    # Zero weights, bias = channel index: logit channel a is anchor a, delta channel 4a + k is
    # coordinate k of anchor a, at every location (row, column, anchor order of grid_anchors).
    head = RetinaNetHead(anchor_sizes=(16.0, 32.0), anchor_aspect_ratios=(0.5, 1.0, 2.0), num_convs=1)
    with torch.no_grad():
        for conv in (head.cls_score, head.bbox_pred):
            conv.weight.zero_()
            conv.bias.copy_(torch.arange(conv.out_channels, dtype=torch.float32))
    logits, deltas = head.predict(torch.randn(2, 256, 3, 5))
    assert logits.shape == (2, 3 * 5 * 6) and deltas.shape == (2, 3 * 5 * 6, 4)
    torch.testing.assert_close(logits, torch.arange(6.0).repeat(2, 15))
    torch.testing.assert_close(deltas, torch.arange(24.0).view(6, 4).repeat(2, 15, 1))
    assert len(head.anchors((3, 5))) == logits.shape[1]


def test_initialisation_is_retinanets():
    head = RetinaNetHead()
    assert head.num_anchors == 30 and len(head.cls_subnet) == len(head.bbox_subnet) == 8  # 4 x (conv, ReLU)
    torch.testing.assert_close(head.cls_score.bias, torch.full((30,), -math.log(99.0)))
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(not m.bias.any() for m in convs if m is not head.cls_score)
    assert all(abs(float(m.weight.detach().std()) - 0.01) < 5e-4 for m in convs)
    assert not any(isinstance(m, (torch.nn.GroupNorm, torch.nn.BatchNorm2d)) for m in head.modules())


# ------------------------------------------------------------------------------- inference
# Anchors = boxes (zero deltas) of a 64 x 96 (H x W) image, with the probability of each.
SCRIPTED = [
    ([0.0, 0, 32, 32], 0.9),  # kept
    ([2, 0, 34, 32], 0.8),  # IoU 0.88 with the first: suppressed
    ([0, 11, 32, 43], 0.7),  # IoU 0.488 with the first: kept
    ([0, -10, 32, 22], 0.65),  # IoU 0.524 with the first: suppressed, clipping would not save it
    ([40, 0, 72, 32], 0.3),  # kept
    ([120, 0, 152, 32], 0.2),  # outside the image: empty after clipping, dropped
    ([80, 0, 112, 32], 0.06),  # above 0.05: kept, clipped to W = 96
    ([0, 40, 32, 64], 0.04),  # below 0.05: dropped
]


def _detect(head: RetinaNetHead) -> dict:
    anchors = torch.tensor([box for box, _ in SCRIPTED])
    logits = torch.tensor([_logit(p) for _, p in SCRIPTED])
    return head.detect(logits, torch.zeros(len(anchors), 4), anchors, (64, 96))


def test_inference_thresholds_suppresses_clips_and_returns_probabilities():
    out = _detect(_head())
    expected = torch.tensor([[0.0, 0, 32, 32], [0, 11, 32, 43], [40, 0, 72, 32], [80, 0, 96, 32]])
    torch.testing.assert_close(out["boxes"], expected)
    torch.testing.assert_close(out["scores"], torch.tensor([0.9, 0.7, 0.3, 0.06]))


def test_inference_caps_after_nms_and_takes_top_candidates_before_it():
    assert len(_detect(_head(detections_per_image=2))["boxes"]) == 2  # first two of the four
    # Only the two best (0.9 and 0.8, one box twice) enter NMS: one detection.
    torch.testing.assert_close(_detect(_head(topk_candidates_test=2))["scores"], torch.tensor([0.9]))


def test_score_threshold_is_strict():
    head = _head(score_thresh_test=0.5)
    anchors = torch.tensor([[0.0, 0, 8, 8], [20, 20, 28, 28]])
    out = head.detect(torch.tensor([0.0, 0.1]), torch.zeros(2, 4), anchors, (32, 32))
    torch.testing.assert_close(out["boxes"], torch.tensor([[20.0, 20, 28, 28]]))  # p = 0.5 is not above 0.5


# --------------------------------------------------------------------------- whole model
def _config(**overrides):
    return load_config(RETINANET, overrides={**TINY, **overrides})


def test_overfits_one_clip_and_finds_its_lesion():
    # A 128-px clip with a 56-px lesion (3.5 strides) at the configured base lr. Momentum 0 makes
    # the normaliser the clip's (fixed) foreground count, so the logged losses are the summed
    # losses over a constant: the EMA's fall from 100 would otherwise lift them as they learn.
    # One conv per subnet keeps the test short (the 4-conv head falls as clearly, in 30 steps).
    torch.manual_seed(0)
    cfg = _config(**{"model.retinanet.num_convs": 1, "model.retinanet.loss_normalizer_momentum": 0.0})
    model = build_model(cfg).train()
    clip = lesion_clip(3, size=128, lesion=56)
    history = overfit_history(model, clip, steps=15, lr=cfg.solver.base_lr)
    for name in ("loss_retinanet_cls", "loss_retinanet_reg"):
        assert history[-1][name] <= 0.3 * history[0][name], [step[name] for step in history]
    model.eval().reset()
    out = model.infer_frame(clip["images"][0], original_size=(128, 128))
    # The best detection is the lesion, its probability ten times the prior 0.01 and more.
    assert float(box_iou(out["boxes"][:1], clip["boxes"][0])) > 0.7 and out["scores"][0] > 0.1


def test_experiment_trains_a_step_and_infers_frames():
    torch.manual_seed(0)
    model = build_model(_config()).train()
    head = model.dense_head
    assert isinstance(head, RetinaNetHead) and head.detections_per_image == 100 and head.focal_gamma == 1.5
    losses = model([lesion_clip(3, empty_frames=(1,))])
    assert set(losses) == {"loss_retinanet_cls", "loss_retinanet_reg"}
    assert all(v.dim() == 0 and torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert head.cls_score.weight.grad.abs().sum() > 0 and head.bbox_pred.weight.grad.abs().sum() > 0
    assert model.backbone.layer3[0].conv1.weight.grad.abs().sum() > 0
    assert float(head.loss_normalizer) < 100  # one update
    model.eval().reset()
    for image in lesion_clip(3, seed=1)["images"]:
        out = model.infer_frame(image, original_size=(2 * SIZE, SIZE))
        assert (out["scores"] > 0.05).all() and len(out["boxes"]) <= 100
        assert (out["boxes"][:, [0, 2]] <= SIZE).all() and (out["boxes"][:, [1, 3]] <= 2 * SIZE).all()


def test_detections_per_image_is_the_cap_a_user_sets():
    # No score threshold, so the untrained head's 480 anchors give more than 16 boxes after NMS.
    image = lesion_clip(1)["images"][0]
    counts = {}
    for cap in (100, 16):
        torch.manual_seed(0)
        overrides = {"model.retinanet.score_thresh_test": 0.0, "model.retinanet.detections_per_image": cap}
        model = build_model(_config(**overrides))
        model.eval().reset()
        counts[cap] = len(model.infer_frame(image, original_size=(SIZE, SIZE))["boxes"])
    assert counts[16] == 16 < counts[100] <= 100


def test_cpu_profile_anchor_keys_resize_the_head():
    cfg = _config(**{"model.retinanet.anchor_sizes": [16, 32, 64, 128]})
    head = build_dense_head(cfg, in_channels=256, stride=16)
    assert head.num_anchors == 24 and head.cls_score.out_channels == 24 and head.bbox_pred.out_channels == 96
    assert head.anchors((8, 8)).shape == (8 * 8 * 24, 4)
    defaults = load_config().model.retinanet
    assert (defaults.iou_thresholds, defaults.focal_alpha, defaults.nms_thresh_test) == ((0.3, 0.5), 0.25, 0.5)
    assert (defaults.score_thresh_test, defaults.topk_candidates_test, defaults.smooth_l1_beta) == (0.05, 1000, 0.0)
    with pytest.raises(ConfigError, match="iou_thresholds"):
        _config(**{"model.retinanet.iou_thresholds": [0.5, 0.3]})
