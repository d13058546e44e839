"""Anchors, proposal selection and the RPN: shapes, hand-computed anchors and losses."""

from __future__ import annotations

import math

import pytest
import torch

from ultradet.config import load_config
from ultradet.modeling.proposal_generator import build_proposal_generator
from ultradet.modeling.proposal_generator.anchors import cell_anchors, grid_anchors
from ultradet.modeling.proposal_generator.rpn import RPN
from ultradet.modeling.proposal_generator.selection import select_proposals
from ultradet.modeling.registry import PROPOSAL_GENERATORS


def test_cell_anchor_has_area_size_squared_and_ratio_h_over_w():
    anchors = cell_anchors((32.0,), (0.5,))
    w, h = 32 / math.sqrt(0.5), 32 * math.sqrt(0.5)  # 45.25 x 22.63
    torch.testing.assert_close(anchors, torch.tensor([[-w / 2, -h / 2, w / 2, h / 2]]))


def test_default_config_gives_30_anchors_per_location():
    rpn = PROPOSAL_GENERATORS.get("rpn").from_config(load_config())
    assert rpn.num_anchors == 30
    assert rpn.anchors((3, 5)).shape == (3 * 5 * 30, 4)


def test_grid_anchor_order_is_row_column_anchor():
    cell = cell_anchors((16.0, 32.0), (1.0,))
    anchors = grid_anchors(cell, (2, 3), stride=16)
    # Location (row 1, column 2) is the 6th location; its 2nd anchor (size 32) centred at (32, 16).
    torch.testing.assert_close(anchors[5 * 2 + 1], torch.tensor([16.0, 0.0, 48.0, 32.0]))


def test_select_proposals_clips_drops_empty_and_suppresses():
    boxes = torch.tensor([[-5.0, -5.0, 20.0, 20.0], [0.0, 0.0, 19.0, 19.0], [30.0, 30.0, 30.0, 40.0], [40, 5, 90, 30]])
    scores = torch.tensor([0.9, 0.8, 0.95, 0.5])
    out = select_proposals(boxes, scores, (50, 60), pre_nms_topk=10, nms_thresh=0.7, post_nms_topk=10)
    # Box 2 is empty, box 1 overlaps box 0 (IoU 0.9025 after clipping), box 3 is clipped to W=60.
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.0, 0.0, 20.0, 20.0], [40.0, 5.0, 60.0, 30.0]]))
    torch.testing.assert_close(out["scores"], torch.tensor([0.9, 0.5]))


def _features(frames=3, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(frames, 256, size // 16, size // 16, generator=g)


TARGETS = [
    {"boxes": torch.tensor([[10.0, 10.0, 42.0, 42.0]]), "labels": torch.zeros(1, dtype=torch.long)},
    {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    {"boxes": torch.tensor([[0.0, 0.0, 60.0, 30.0], [20, 20, 50, 64]]), "labels": torch.zeros(2, dtype=torch.long)},
]


def test_proposals_are_topk_boxes_inside_the_image():
    torch.manual_seed(0)
    rpn = RPN().eval()
    proposals, losses = rpn(_features(size=80)[:, :, :, :4], (80, 64))
    assert losses == {} and len(proposals) == 3
    for p in proposals:
        boxes, scores = p["boxes"], p["scores"]
        assert 0 < len(boxes) <= 16 and boxes.shape[1] == 4
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 64).all() and (boxes[:, [1, 3]] <= 80).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert ((scores >= 0) & (scores <= 1)).all() and torch.equal(scores, scores.sort(descending=True).values)


def test_label_anchors_matches_by_iou_thresholds():
    rpn = RPN(anchor_sizes=(32.0,), anchor_aspect_ratios=(1.0,))
    anchors = torch.tensor([[0.0, 0, 32, 32], [4, 0, 36, 32], [16, 0, 48, 32], [100, 100, 132, 132]])
    labels, matched = rpn.label_anchors(anchors, torch.tensor([[0.0, 0, 32, 32]]))
    # IoUs 1, 0.778 (>= 0.7: fg), 0.333 (between: ignored), 0 (< 0.3: bg).
    torch.testing.assert_close(labels, torch.tensor([1.0, 1.0, -1.0, 0.0]))
    torch.testing.assert_close(matched[:2], torch.tensor([[0.0, 0, 32, 32]] * 2))


def test_losses_finite_and_differentiable_with_empty_frames():
    torch.manual_seed(0)
    rpn = RPN().train()
    proposals, losses = rpn(_features(), (64, 64), TARGETS)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert rpn.head.conv[0][0].weight.grad.abs().sum() > 0
    assert all(len(p["boxes"]) <= 16 for p in proposals)


def test_all_background_loss_is_log2_at_zero_logits():
    # Zero head weights: every logit is 0, so each sampled anchor costs log 2; 4x4x30 = 480 anchors
    # >= 256 sampled per frame, and the sum is divided by T * 256.
    rpn = RPN().train()
    for p in rpn.head.parameters():
        torch.nn.init.zeros_(p)
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 3
    _, losses = rpn(_features(), (64, 64), empty)
    torch.testing.assert_close(losses["loss_rpn_cls"], torch.tensor(math.log(2)))
    assert losses["loss_rpn_loc"] == 0


def test_same_seed_same_losses():
    def run():
        torch.manual_seed(3)
        rpn = RPN().train()
        return rpn(_features(), (64, 64), TARGETS)[1]

    assert run() == run()


def test_training_without_targets_is_an_error():
    with pytest.raises(ValueError, match="one target dict per frame"):
        RPN().train()(_features(), (64, 64))


def test_build_uses_config_values():
    prefix = "model.rpn."
    cfg = load_config(overrides={prefix + "anchor_aspect_ratios": [1.0], prefix + "post_nms_topk_test": 4})
    rpn = build_proposal_generator(cfg, in_channels=256, stride=16).eval()
    assert rpn.num_anchors == 5
    assert all(len(p["boxes"]) <= 4 for p in rpn(_features(), (64, 64))[0])
