"""YOLOX head (baselines spec 2.3): decoding, SimOTA against a brute-force loop, losses and
detections on hand cases, an overfit, and the model of experiments/yolox.yaml."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from modeltoy import SIZE, lesion_clip, overfit_history, tiny_config
from ultradet.modeling import build_model
from ultradet.modeling.dense_heads.yolox import YOLOXHead
from ultradet.modeling.dense_heads.yolox_assignment import (
    candidate_masks,
    dynamic_k_matching,
    simota_assign,
    simota_cost,
)
from ultradet.modeling.registry import DENSE_HEADS

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "yolox.yaml"
LN2 = math.log(2.0)


def _head(**kwargs) -> YOLOXHead:
    torch.manual_seed(0)
    return YOLOXHead(in_channels=8, stride=16, **kwargs)


def _bce(logit: float, target: float) -> float:
    """BCE with logits of one value: log(1 + e^x) - t * x."""
    return math.log1p(math.exp(logit)) - target * logit


# ------------------------------------------------------------------------------------ decoding
def test_decoding_of_a_hand_case():
    head = _head()
    cells = head.cells((2, 3), torch.device("cpu"))
    # Row-major (column, row) indices: cell 4 is column 1 of row 1.
    assert cells.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    raw = torch.tensor([[0.5, 0.25, LN2, 0.0]])
    # Cell (1, 1): cx = (0.5 + 1) * 16 = 24, cy = (0.25 + 1) * 16 = 20, w = 2 * 16, h = 1 * 16.
    torch.testing.assert_close(head.decode(raw, cells[4:5]), torch.tensor([[8.0, 12.0, 40.0, 28.0]]))


def test_l1_targets_are_the_raw_outputs_that_decode_to_the_gt_box():
    head = _head()
    g = torch.Generator().manual_seed(0)
    cells = torch.randint(0, 8, (20, 2), generator=g).float()
    gt = torch.rand(20, 2, generator=g) * 128
    gt = torch.cat([gt, gt + 4 + torch.rand(20, 2, generator=g) * 100], dim=1)
    torch.testing.assert_close(head.decode(head.l1_targets(gt, cells), cells), gt, atol=1e-4, rtol=0)


def test_a_diverging_size_output_decodes_to_a_finite_box():
    head = _head()
    boxes = head.decode(torch.tensor([[0.0, 0.0, 1000.0, -1000.0]]), torch.zeros(1, 2))
    assert torch.isfinite(boxes).all() and boxes[0, 2] > 1e5 and boxes[0, 3] == boxes[0, 1] == 0


# ------------------------------------------------------------------------------------ SimOTA
def test_candidates_are_in_box_or_near_the_image_clipped_centre():
    # Cell centres on one row, y = 8. GT 0 (centre x = 56) contains x = 40..72; its centre
    # region is |x - 56| < 40. GT 1 lies mostly left of the image (W = 200): its centre x = -40
    # is clipped to 0, so its centre region is x < 40 although the box ends at x = 10.
    centres = torch.tensor([[8.0, 8.0], [40.0, 8.0], [88.0, 8.0], [104.0, 8.0], [136.0, 8.0]])
    gt = torch.tensor([[40.0, 0.0, 72.0, 16.0], [-90.0, 0.0, 10.0, 16.0]])
    candidates, both = candidate_masks(centres, gt, (64, 200), radius=40.0)
    # x = 40 is on GT 0's left edge: not in the box (strict), but in its centre region.
    # x = 88 is in GT 0's centre region (|88 - 56| = 32); x = 104 is not (48), nor in any box.
    assert candidates.tolist() == [True, True, True, False, False]
    # In box and centre: GT 1 contains x = 8 (-90 < 8 < 10) and 8 < 0 + 40.
    assert both.tolist() == [[False, False, False, False, False], [True, False, False, False, False]]


def test_cost_of_a_hand_case():
    # sigmoid(0) * sigmoid(0) = 1/4, sqrt = 1/2, BCE(1/2, 1) = ln 2; -log(1/2) = ln 2.
    iou = torch.tensor([[0.5, 0.0]])
    cost = simota_cost(torch.zeros(2), torch.zeros(2), iou, torch.tensor([[True, False]]), iou_weight=3.0)
    expected = [LN2 + 3 * -math.log(0.5 + 1e-8), LN2 + 3 * -math.log(1e-8) + 1e5]
    torch.testing.assert_close(cost[0], torch.tensor(expected))


def test_a_cell_claimed_twice_goes_to_its_cheapest_gt_of_all():
    # GT 0 (k = 1) and GT 1 (k = 1) both take cell 1. GT 2 (k = 1) takes cell 0 and not cell 1,
    # yet its cost there (0.3) is the lowest of the three: cell 1 goes to GT 2, as the original.
    cost = torch.tensor([[5.0, 1.0, 9.0], [5.0, 0.5, 9.0], [0.1, 0.3, 9.0]])
    iou = torch.tensor([[0.9, 0.0, 0.0], [0.9, 0.0, 0.0], [0.9, 0.0, 0.0]])
    assert dynamic_k_matching(cost, iou, topk_iou=10).tolist() == [2, 2, -1]


def test_dynamic_k_is_the_floor_of_the_top_iou_sum_at_least_one():
    # IoUs 0.9 + 0.8 + 0.7 + 0.1 = 2.5 -> k = 2 with topk_iou 4; the top 2 sum to 1.7 -> k = 1;
    # all-zero IoUs still give k = 1.
    cost = torch.tensor([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    iou = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.0, 0.0, 0.0, 0.0]])
    assert dynamic_k_matching(cost[:1], iou[:1], topk_iou=4).tolist() == [-1, -1, 0, 0]
    assert dynamic_k_matching(cost[:1], iou[:1], topk_iou=2).tolist() == [-1, -1, -1, 0]
    assert dynamic_k_matching(cost[1:], iou[1:], topk_iou=4).tolist() == [0, -1, -1, -1]


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _brute_force_simota(centres, cls, obj, pred, gts, image_size, radius, topk=10, iou_weight=3.0):
    """SimOTA of baselines spec 2.3, one loop per rule, in float64. Returns ``{"assigned": GT per
    cell or -1, "shared": cells claimed by several GTs, "cost_margin": the smallest cost gap a
    ranking had to resolve, "k_margin": the smallest distance of a top-IoU sum to an integer}``."""
    height, width = image_size
    n, k = len(centres), len(gts)
    in_box = [[x1 < x < x2 and y1 < y < y2 for (x, y) in centres] for (x1, y1, x2, y2) in gts]
    in_centre = []
    for x1, y1, x2, y2 in gts:
        cx, cy = min(max((x1 + x2) / 2, 0), width), min(max((y1 + y2) / 2, 0), height)
        in_centre.append([abs(x - cx) < radius and abs(y - cy) < radius for (x, y) in centres])
    cand = [j for j in range(n) if any(in_box[i][j] or in_centre[i][j] for i in range(k))]
    iou = [[_iou(gts[i], pred[j]) for j in cand] for i in range(k)]
    cost = []
    for i in range(k):
        row = []
        for c, j in enumerate(cand):
            p = math.sqrt(_sigmoid(cls[j]) * _sigmoid(obj[j]))
            penalty = 0.0 if in_box[i][j] and in_centre[i][j] else 1e5
            row.append(min(100.0, -math.log(p)) + iou_weight * -math.log(iou[i][c] + 1e-8) + penalty)
        cost.append(row)
    claims = [[] for _ in cand]
    gaps, k_margins = [], []
    for i in range(k):
        top_sum = sum(sorted(iou[i], reverse=True)[:topk])
        k_margins.append(abs(top_sum - round(top_sum)))
        dyn_k = max(1, math.floor(top_sum))
        ranked = sorted(range(len(cand)), key=lambda c: cost[i][c])
        for c in ranked[:dyn_k]:
            claims[c].append(i)
        if dyn_k < len(ranked):
            gaps.append(cost[i][ranked[dyn_k]] - cost[i][ranked[dyn_k - 1]])
    assigned, shared = [-1] * n, 0
    for c, j in enumerate(cand):
        if len(claims[c]) == 1:
            assigned[j] = claims[c][0]
        elif len(claims[c]) > 1:
            shared += 1
            column = sorted(cost[i][c] for i in range(k))
            gaps.append(column[1] - column[0])
            assigned[j] = min(range(k), key=lambda i: cost[i][c])
    return {"assigned": assigned, "shared": shared, "cost_margin": min(gaps), "k_margin": min(k_margins)}


def _random_case(seed: int):
    """A 6 x 7 grid (stride 16) on a 90 x 100 image, 1-3 overlapping GTs (some past the image's
    edge), predicted boxes scattered around them."""
    g = torch.Generator().manual_seed(seed)
    head = _head()
    centres = (head.cells((6, 7), torch.device("cpu")) + 0.5) * 16
    k = 1 + seed % 3
    xy = torch.rand(k, 2, generator=g) * torch.tensor([80.0, 70.0]) + 10
    wh = 20 + torch.rand(k, 2, generator=g) * 60
    gts = torch.cat([xy - wh / 2, xy + wh / 2], dim=1)
    pick = torch.randint(0, k, (len(centres),), generator=g)
    jitter = torch.randn(len(centres), 4, generator=g) * 12
    pred = gts[pick] + jitter
    pred[:, 2:] = torch.maximum(pred[:, 2:], pred[:, :2] + 2)
    cls = torch.randn(len(centres), generator=g) * 2
    obj = torch.randn(len(centres), generator=g) * 2
    return centres, cls, obj, pred, gts


@pytest.mark.parametrize("seed", range(8))
def test_simota_is_the_brute_force_assignment(seed):
    centres, cls, obj, pred, gts = _random_case(seed)
    assigned = simota_assign(
        centres, cls, obj, pred, gts, (90, 100), radius=2.5 * 16, iou_weight=3.0, topk_iou=10
    )
    expected = _brute_force_simota(
        centres.tolist(), cls.tolist(), obj.tolist(), pred.tolist(), gts.tolist(), (90, 100), 2.5 * 16
    )
    # float32 decides like the float64 loop only where the margins are clear (next to the 1e5
    # penalty float32 resolves ~0.008; a sum of IoUs is exact to ~1e-6).
    assert expected["cost_margin"] > 0.05 and expected["k_margin"] > 1e-4, f"seed {seed} has a near-tie"
    assert assigned.tolist() == expected["assigned"]


def test_the_random_cases_include_cells_claimed_by_two_gts():
    shared = [_brute_force_simota(*(x.tolist() for x in _random_case(s)), (90, 100), 2.5 * 16)["shared"] for s in range(8)]
    assert sum(s > 0 for s in shared) >= 2, shared


def test_a_frame_without_gt_or_candidates_is_background():
    centres = torch.tensor([[8.0, 8.0], [24.0, 8.0]])
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 2)
    logits = torch.zeros(2)
    kwargs = dict(radius=4.0, iou_weight=3.0, topk_iou=10)
    empty = simota_assign(centres, logits, logits, boxes, torch.zeros(0, 4), (16, 32), **kwargs)
    # A GT outside the 16 x 32 image: its centre is clipped to (32, 16), 8 pixels from the
    # nearest cell centre (radius 4), and no centre lies in its box.
    far_gt = torch.tensor([[500.0, 500.0, 520.0, 520.0]])
    far = simota_assign(centres, logits, logits, boxes, far_gt, (16, 32), **kwargs)
    assert empty.tolist() == far.tolist() == [-1, -1]


# ------------------------------------------------------------------------------------ losses
# One 2 x 2 grid (stride 16, 32 x 32 image), two frames; frame 0 has the GT (0, 0, 32, 32), frame
# 1 none. Every cell centre lies inside the GT and its centre region. Frame 0's predicted boxes:
# cell 0 the GT itself (IoU 1), cell 1 (0, 0, 32, 16) (IoU 0.5), cell 2 (0, 0, 32, 24) (IoU 0.75),
# cell 3 far away (IoU 0).
RAW_FRAME0 = [[1.0, 1.0, LN2, LN2], [0.0, 0.5, LN2, 0.0], [1.0, -0.25, LN2, math.log(1.5)], [5.75, 5.75, 0.0, 0.0]]
CLS = [[1.0, 0.0, -1.0, 0.5], [0.3, 0.3, 0.3, 0.3]]
OBJ = [[0.0, 0.0, 0.0, 0.0], [2.0, -2.0, 0.5, 0.0]]


def _hand_losses(**kwargs) -> dict[str, float]:
    head = _head(**kwargs)
    cells = head.cells((2, 2), torch.device("cpu"))
    raw = torch.tensor([RAW_FRAME0, [[0.5, 0.5, 0.0, 0.0]] * 4])
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 32.0, 32.0]])}, {"boxes": torch.zeros(0, 4)}]
    losses = head.losses(torch.tensor(CLS), torch.tensor(OBJ), raw, head.decode(raw, cells), cells, (32, 32), targets)
    return {name: float(value) for name, value in losses.items()}


def test_losses_of_a_hand_case():
    # Top-4 IoUs sum to 2.25 -> k = 2. Costs (obj 0): cell 0 -0.5 log(sigmoid(1) / 2) = 0.50;
    # cell 2 1.00 + 3 * 0.29 = 1.87; cell 1 0.69 + 3 * 0.69 = 2.77; cell 3 ~55. Foreground: cells
    # 0 and 2 of frame 0, so every loss is divided by 2.
    losses = _hand_losses()
    assert losses["loss_yolox_cls"] == pytest.approx((_bce(1.0, 1.0) + _bce(-1.0, 0.75)) / 2, rel=1e-5)
    obj_targets = [[1, 0, 1, 0], [0, 0, 0, 0]]
    obj = sum(_bce(o, t) for os, ts in zip(OBJ, obj_targets) for o, t in zip(os, ts))
    assert losses["loss_yolox_obj"] == pytest.approx(obj / 2, rel=1e-5)
    # 5 x ((1 - 1^2) + (1 - 0.75^2)) / 2.
    assert losses["loss_yolox_iou"] == pytest.approx(5 * (1 - 0.75**2) / 2, rel=1e-5)
    # L1 targets: cell 0 (1, 1, ln 2, ln 2) = its output; cell 2 at (0, 1): (16/16 - 0, 16/16 - 1,
    # ln 2, ln 2) against (1, -0.25, ln 2, ln 1.5).
    assert losses["loss_yolox_l1"] == pytest.approx((0.25 + LN2 - math.log(1.5)) / 2, rel=1e-5)


def test_l1_loss_can_be_switched_off_and_weights_scale():
    on, off = _hand_losses(), _hand_losses(l1_loss=False, iou_loss_weight=1.0)
    assert "loss_yolox_l1" not in off
    assert off["loss_yolox_iou"] == pytest.approx(on["loss_yolox_iou"] / 5, rel=1e-6)


def test_a_clip_without_gt_normalises_by_one():
    head = _head()
    cells = head.cells((2, 2), torch.device("cpu"))
    raw = torch.zeros(1, 4, 4, requires_grad=True)
    obj = torch.tensor([[0.0, 1.0, -1.0, 2.0]], requires_grad=True)
    targets = [{"boxes": torch.zeros(0, 4)}]
    losses = head.losses(torch.zeros(1, 4), obj, raw, head.decode(raw, cells), cells, (32, 32), targets)
    assert losses["loss_yolox_obj"].item() == pytest.approx(sum(_bce(o, 0) for o in [0.0, 1.0, -1.0, 2.0]), rel=1e-6)
    assert all(losses[name].item() == 0 for name in ("loss_yolox_cls", "loss_yolox_iou", "loss_yolox_l1"))
    sum(losses.values()).backward()  # every loss stays in the graph
    assert raw.grad is not None and obj.grad.abs().sum() > 0


def test_training_checks_its_targets():
    head = _head().train()
    features = torch.randn(2, 8, 2, 2)
    with pytest.raises(ValueError, match="one target dict per frame"):
        head(features, (32, 32), [{"boxes": torch.zeros(0, 4)}])
    with pytest.raises(ValueError, match="positive width and height"):
        head(features, (32, 32), [{"boxes": torch.tensor([[4.0, 4.0, 4.0, 9.0]])}, {"boxes": torch.zeros(0, 4)}])


# ------------------------------------------------------------------------------------ detections
def test_detections_keep_the_pre_nms_top_k_then_nms_then_the_first_k():
    head = _head(pre_nms_topk_test=4, nms_thresh_test=0.7, detections_per_image=2)
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # 0.9
            [0.0, 0.0, 10.0, 7.2],  # 0.8, IoU 0.72 with the first: suppressed
            [0.0, 0.0, 10.0, 6.8],  # 0.7, IoU 0.68: kept
            [50.0, 0.0, 60.0, 10.0],  # 0.6, kept but beyond the first 2
            [80.0, 0.0, 90.0, 10.0],  # 0.1: outside the top 4
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.1])
    out = head.select(boxes, scores, (100, 100))
    torch.testing.assert_close(out["boxes"], boxes[[0, 2]])
    torch.testing.assert_close(out["scores"], scores[[0, 2]])
    wide = _head(pre_nms_topk_test=4, detections_per_image=16).select(boxes, scores, (100, 100))
    assert wide["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])  # no score threshold, top 4 only


def test_detections_are_clipped_and_empty_ones_dropped():
    head = _head()
    boxes = torch.tensor([[-5.0, 10.0, 20.0, 40.0], [40.0, 40.0, 50.0, 50.0]])
    out = head.select(boxes, torch.tensor([0.9, 0.8]), (32, 36))
    # The second box lies below the 32-pixel-high image: empty once clipped.
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.0, 10.0, 20.0, 32.0]]))


def test_scores_are_objectness_times_class_probability():
    # Zero box weights: every cell predicts the 16-pixel box of its own cell (t = (0.5, 0.5, 0, 0)),
    # disjoint boxes, all scored sigmoid(-1) * sigmoid(2); 5 x 6 = 30 cells, the first 16 returned.
    head = _head().eval()
    for conv, bias in ((head.cls_pred, [-1.0]), (head.obj_pred, [2.0]), (head.reg_pred, [0.5, 0.5, 0.0, 0.0])):
        torch.nn.init.zeros_(conv.weight)
        conv.bias.data = torch.tensor(bias)
    detections, losses = head(torch.randn(1, 8, 5, 6), (80, 96))
    assert losses == {} and len(detections) == 1
    scores, boxes = detections[0]["scores"], detections[0]["boxes"]
    assert len(scores) == 16
    torch.testing.assert_close(scores, torch.full((16,), 1 / (1 + math.e) / (1 + math.exp(-2))))
    assert ((boxes[:, 2:] - boxes[:, :2]) == 16).all() and (boxes % 16 == 0).all()


# ------------------------------------------------------------------------------------ model
def test_the_head_is_registered_and_built_from_its_config_section():
    cfg = tiny_config(EXPERIMENT, model__yolox__center_radius=1.5)
    head = DENSE_HEADS.get("yolox").from_config(cfg, in_channels=32, stride=16)
    assert isinstance(head, YOLOXHead) and head.radius == 1.5 * 16
    assert head.cls_pred.in_channels == 32 and len(head.cls_convs) == len(head.reg_convs) == 2
    assert isinstance(head.stem[1], torch.nn.BatchNorm2d) and head.stem[0].kernel_size == (1, 1)
    # The original's priors: sigmoid(bias) = 0.01 (class), 1e-5 (objectness).
    assert head.cls_pred.bias.sigmoid().item() == pytest.approx(0.01)
    assert head.obj_pred.bias.sigmoid().item() == pytest.approx(1e-5)
    d = tiny_config(EXPERIMENT).model.yolox
    assert (d.simota_topk_iou, d.simota_iou_weight, d.iou_loss_weight, d.l1_loss) == (10, 3.0, 5.0, True)
    assert (d.pre_nms_topk_test, d.nms_thresh_test, d.detections_per_image) == (256, 0.7, 16)


def test_groupnorm_head_answers_each_frame_alone_in_training_and_at_test():
    """norm=gn: a frame's outputs do not depend on the clip it trains in, nor on train/eval mode
    (with BatchNorm in training they do: the clip's statistics normalise every frame)."""
    features = torch.randn(4, 32, 5, 6, generator=torch.Generator().manual_seed(0)) * 3 + 1
    torch.manual_seed(0)
    gn = YOLOXHead(in_channels=32, stride=16, norm="gn").train()
    assert isinstance(gn.stem[1], torch.nn.GroupNorm) and gn.stem[1].num_groups == 32
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in gn.modules())
    with torch.no_grad():
        clip = gn.predict(features)
        alone = gn.predict(features[:1])
        tested = gn.eval().predict(features)
    for a, b, c in zip(clip, alone, tested):
        torch.testing.assert_close(a[:1], b)
        torch.testing.assert_close(a, c)
    bn = YOLOXHead(in_channels=32, stride=16, norm="bn").train()
    with torch.no_grad():
        assert not torch.allclose(bn.predict(features)[0][:1], bn.predict(features[:1])[0])
    with pytest.raises(ValueError, match="norm"):
        YOLOXHead(in_channels=32, stride=16, norm="ln")


def test_the_experiment_model_trains_a_step_and_detects_frames():
    torch.manual_seed(0)
    model = build_model(tiny_config(EXPERIMENT)).train()
    losses = model([lesion_clip(3, empty_frames=(1,))])
    assert set(losses) == {"loss_yolox_cls", "loss_yolox_obj", "loss_yolox_iou", "loss_yolox_l1"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    head = model.dense_head
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    model.eval().reset()
    for image in lesion_clip(2, seed=1)["images"]:
        out = model.infer_frame(image, original_size=(2 * SIZE, SIZE))
        assert len(out["boxes"]) <= 16 and (out["labels"] == 0).all()
        assert (out["boxes"][:, [0, 2]] <= SIZE).all() and (out["boxes"][:, [1, 3]] <= 2 * SIZE).all()
        assert (out["scores"][:-1] >= out["scores"][1:]).all()


# A 128-pixel clip with a 56-pixel lesion (3.5 strides; on 64 pixels the whole lesion is 1.5
# cells), 40 AdamW steps at twice the base lr (at 2e-4 the IoU loss needs ~60 steps to halve);
# mean of the last 5 steps against the first 5 (SimOTA's k and cells change from step to step).
# The class loss's target is the IoU, so it cannot fall below the binary entropy of the IoUs
# (0.5-0.69 for IoUs of 0.2-0.8) and falls least. Seeds 0-4 give ratios of at most cls 0.64,
# obj 0.25, IoU 0.53, L1 0.28.
def test_overfits_one_clip_and_every_loss_falls():
    torch.manual_seed(0)
    model = build_model(tiny_config(EXPERIMENT)).train()
    # 60 steps: at 40 the IoU loss had fallen to 0.46 of its start with 2 threads but only to 0.76 with
    # 1 (another float summation order); at 60 both are below 0.43.
    history = overfit_history(model, lesion_clip(3, size=128, lesion=56), steps=60, lr=4e-4)

    def mean(steps, name):
        return sum(step[name] for step in steps) / len(steps)

    ratios = {name: mean(history[-5:], name) / mean(history[:5], name) for name in history[0]}
    limits = {"loss_yolox_cls": 0.8, "loss_yolox_obj": 0.5, "loss_yolox_iou": 0.6, "loss_yolox_l1": 0.5}
    assert all(ratios[name] <= limit for name, limit in limits.items()), ratios
