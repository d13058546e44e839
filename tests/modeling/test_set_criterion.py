"""Set-prediction matching and losses (DETR, Deformable DETR, AlignDETR; baselines spec 3.1,
seed spec 1-2): the Hungarian assignment against brute force, one-to-one and many-to-one, the
matching cost and every loss against hand-computed values, the detached AlignDETR quality,
normalisation and input checks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from ultradet.modeling import distributed
from ultradet.modeling.set_prediction import SetCriterion, hungarian_match, match_cost
from ultradet.modeling.set_prediction.criterion import matching_quality, prime_sample_weights

ALPHA, GAMMA = 0.25, 2.0

# The hand case: GT (cx, cy, w, h) = (0.5, 0.5, 0.4, 0.2), XYXY (0.3, 0.4, 0.7, 0.6), area 0.08.
#   NEAR (0.5, 0.5, 0.2, 0.2) = XYXY (0.4, 0.4, 0.6, 0.6), area 0.04, inside the GT:
#     IoU = 0.04 / 0.08 = 0.5, enclosing box = the GT, GIoU = 0.5; L1 = |0.2 - 0.4| = 0.2.
#   FAR (0.2, 0.2, 0.2, 0.2) = XYXY (0.1, 0.1, 0.3, 0.3): no overlap, union 0.12,
#     enclosing (0.1, 0.1, 0.7, 0.6) = 0.30, GIoU = -(0.30 - 0.12) / 0.30 = -0.6;
#     L1 = 0.3 + 0.3 + 0.2 + 0 = 0.8.
GT = torch.tensor([[0.5, 0.5, 0.4, 0.2]])
NEAR = [0.5, 0.5, 0.2, 0.2]
FAR = [0.2, 0.2, 0.2, 0.2]
LESION = torch.tensor([0])


def _focal_cost(p: float) -> float:
    return ALPHA * (1 - p) ** GAMMA * -math.log(p + 1e-8) - (1 - ALPHA) * p**GAMMA * -math.log(1 - p + 1e-8)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _targets(*gt_counts: int, boxes: torch.Tensor | None = None) -> list[dict]:
    return [
        {"boxes": GT.repeat(n, 1) if boxes is None else boxes, "labels": torch.zeros(n, dtype=torch.long)}
        for n in gt_counts
    ]


# ------------------------------------------------------------------------------- matching cost
def test_focal_matching_cost_by_hand():
    logits = torch.tensor([[0.0], [_logit(0.8)]])
    cost = match_cost(logits, torch.tensor([NEAR, FAR]), LESION, GT, class_cost="focal", weights=(2.0, 5.0, 2.0))
    # 0.5: 0.25 * 0.25 * ln 2 - 0.75 * 0.25 * ln 2 = -0.5 ln 2 * 0.25 = -0.0866434
    assert _focal_cost(0.5) == pytest.approx(-0.125 * math.log(2), rel=1e-6)
    expected = [2 * _focal_cost(0.5) + 5 * 0.2 - 2 * 0.5, 2 * _focal_cost(0.8) + 5 * 0.8 - 2 * -0.6]
    torch.testing.assert_close(cost, torch.tensor([[expected[0]], [expected[1]]]))


def test_softmax_matching_cost_by_hand():
    # Two classes + "no object"; the GTs are of class 1 and class 0.
    logits = torch.tensor([[0.0, math.log(2.0), math.log(5.0)], [0.0, 0.0, 0.0]])
    gt_labels, gt_boxes = torch.tensor([1, 0]), torch.tensor([[0.5, 0.5, 0.4, 0.2], NEAR])
    cost = match_cost(logits, torch.tensor([NEAR, NEAR]), gt_labels, gt_boxes, class_cost="softmax", weights=(1, 0, 0))
    torch.testing.assert_close(cost, torch.tensor([[-2 / 8, -1 / 8], [-1 / 3, -1 / 3]]))
    boxes = torch.tensor([NEAR, FAR])
    box_only = match_cost(logits, boxes, gt_labels, gt_boxes, class_cost="softmax", weights=(0, 5, 2))
    # NEAR vs itself: L1 0, GIoU 1 -> -2.
    torch.testing.assert_close(box_only[:, 0], torch.tensor([5 * 0.2 - 2 * 0.5, 5 * 0.8 + 2 * 0.6]))
    assert box_only[0, 1] == pytest.approx(-2.0)


def test_matching_cost_without_ground_truth_and_bad_labels():
    logits, boxes = torch.zeros(3, 1), torch.full((3, 4), 0.5)
    assert match_cost(logits, boxes, LESION[:0], GT[:0], class_cost="focal").shape == (3, 0)
    with pytest.raises(ValueError, match=r"gt_labels must lie in \[0, 1\)"):
        match_cost(logits, boxes, torch.tensor([1]), GT, class_cost="focal")
    with pytest.raises(ValueError, match=r"gt_labels must lie in \[0, 0\)"):
        match_cost(logits, boxes, LESION, GT, class_cost="softmax")
    with pytest.raises(ValueError, match="class_cost"):
        match_cost(logits, boxes, LESION, GT, class_cost="ce")
    with pytest.raises(ValueError, match=r"boxes FloatTensor\[Q, 4\]"):
        match_cost(logits, boxes[:2], LESION, GT, class_cost="focal")


# ------------------------------------------------------------------------- Hungarian, k = 1
def _brute_force_one_to_one(cost: torch.Tensor) -> float:
    q, g = cost.shape
    if q >= g:  # every GT gets a distinct query
        return min(sum(float(cost[qs[j], j]) for j in range(g)) for qs in itertools.permutations(range(q), g))
    return min(sum(float(cost[i, gs[i]]) for i in range(q)) for gs in itertools.permutations(range(g), q))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("num_queries, num_gt", [(3, 3), (5, 5), (6, 3), (7, 2), (2, 4)])
def test_one_to_one_is_the_brute_force_optimum(num_queries, num_gt, seed):
    cost = torch.rand(num_queries, num_gt, generator=torch.Generator().manual_seed(seed))
    queries, gts = hungarian_match(cost)
    assert len(queries) == min(num_queries, num_gt)
    assert len(set(queries.tolist())) == len(queries) and len(set(gts.tolist())) == len(gts)
    assert queries.tolist() == sorted(queries.tolist())
    assert float(cost[queries, gts].sum()) == pytest.approx(_brute_force_one_to_one(cost), abs=1e-6)


# ---------------------------------------------------------------- Hungarian, many-to-one (k > 1)
def _brute_force_many_to_one(cost: torch.Tensor, k: int) -> float:
    """Every way of giving each GT k distinct queries: ordered choices of k * G queries, slot s
    belonging to GT s // k."""
    q, g = cost.shape
    return min(
        sum(float(cost[qs[s], s // k]) for s in range(k * g)) for qs in itertools.permutations(range(q), k * g)
    )


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("num_queries, num_gt, k", [(8, 2, 2), (6, 1, 3), (7, 1, 2)])
def test_many_to_one_is_the_brute_force_optimum(num_queries, num_gt, k, seed):
    cost = torch.rand(num_queries, num_gt, generator=torch.Generator().manual_seed(seed))
    queries, gts = hungarian_match(cost, k)
    assert len(set(queries.tolist())) == len(queries) == k * num_gt
    assert torch.bincount(gts, minlength=num_gt).tolist() == [k] * num_gt
    assert queries.tolist() == sorted(queries.tolist())
    assert float(cost[queries, gts].sum()) == pytest.approx(_brute_force_many_to_one(cost, k), abs=1e-6)


@pytest.mark.parametrize(
    "num_queries, num_gt, k, per_gt",
    [
        (16, 2, 3, 3),  # 16 >= 2 * 3 * 2: no cap
        (16, 2, 4, 4),  # 16 = 2 * 4 * 2: still none
        (16, 2, 5, 4),  # cap 16 // 4 = 4
        (16, 3, 3, 2),  # cap 16 // 6 = 2
        (16, 5, 2, 1),  # cap max(1, 16 // 10) = 1: one-to-one
        (3, 2, 2, 1),  # cap max(1, 0) = 1
    ],
)
def test_many_to_one_gives_each_gt_k_queries_within_half_of_the_queries(num_queries, num_gt, k, per_gt):
    cost = torch.rand(num_queries, num_gt, generator=torch.Generator().manual_seed(0))
    queries, gts = hungarian_match(cost, k)
    assert torch.bincount(gts, minlength=num_gt).tolist() == [per_gt] * num_gt
    assert len(set(queries.tolist())) == len(queries)


def test_hungarian_match_edge_cases_and_errors():
    for cost in (torch.zeros(4, 0), torch.zeros(0, 3)):
        queries, gts = hungarian_match(cost, 2)
        assert queries.dtype == gts.dtype == torch.long and len(queries) == len(gts) == 0
    with pytest.raises(ValueError, match="NaN"):
        hungarian_match(torch.tensor([[0.0], [float("nan")]]))
    with pytest.raises(ValueError, match="Inf"):
        hungarian_match(torch.tensor([[0.0], [float("inf")]]))
    with pytest.raises(ValueError, match="k .* >= 1"):
        hungarian_match(torch.zeros(2, 1), 0)
    with pytest.raises(ValueError, match=r"\[Q, G\]"):
        hungarian_match(torch.zeros(2))


# ---------------------------------------------------------------------------- focal (Deform DETR)
def _layer(logits: list, boxes: list) -> dict:
    return {
        "logits": torch.tensor([logits]).requires_grad_(),
        "boxes": torch.tensor([boxes]).requires_grad_(),
    }


def test_focal_losses_by_hand():
    # NEAR (p = 0.5) is matched; FAR (p = 0.2) is a negative. Weights class 2, L1 5, GIoU 2.
    output = _layer([[0.0], [_logit(0.2)]], [NEAR, FAR])
    losses = SetCriterion(class_loss="focal")([output], _targets(1))
    focal = ALPHA * 0.5**2 * math.log(2) + (1 - ALPHA) * 0.2**2 * -math.log(0.8)
    assert losses.keys() == {"loss_set_cls", "loss_set_l1", "loss_set_giou"}
    assert losses["loss_set_cls"].item() == pytest.approx(2 * focal, rel=1e-5)
    assert losses["loss_set_l1"].item() == pytest.approx(5 * 0.2, rel=1e-5)
    assert losses["loss_set_giou"].item() == pytest.approx(2 * (1 - 0.5), rel=1e-5)


def test_losses_are_divided_by_the_boxes_of_the_batch_averaged_over_workers(monkeypatch):
    # Two images with the same single GT: every loss doubles over one image, num_boxes = 2.
    one = SetCriterion(class_loss="focal")([_layer([[0.0], [_logit(0.2)]], [NEAR, FAR])], _targets(1))
    pair = {
        "logits": torch.tensor([[[0.0], [_logit(0.2)]]] * 2),
        "boxes": torch.tensor([[NEAR, FAR]] * 2),
    }
    two = SetCriterion(class_loss="focal")([pair], _targets(1, 1))
    for name in one:
        torch.testing.assert_close(two[name], one[name])
    # A second worker holding 4 boxes: num_boxes = (2 + 4) / 2 = 3.
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed.dist, "all_reduce", lambda tensor: tensor.add_(4.0))
    shared = SetCriterion(class_loss="focal")([pair], _targets(1, 1))
    for name in one:
        torch.testing.assert_close(shared[name], one[name] * 2 / 3)


# ------------------------------------------------------------------------------- softmax (DETR)
def test_softmax_cross_entropy_with_eos_coef_by_hand():
    # NEAR is matched to the lesion, FAR's target is "no object" (weight 0.1).
    logits = [[math.log(3.0), 0.0], [0.0, math.log(4.0)]]
    output = _layer(logits, [NEAR, FAR])
    losses = SetCriterion(class_loss="softmax", loss_weights=(1.0, 5.0, 2.0), matcher_weights=(1.0, 5.0, 2.0))(
        [output], _targets(1)
    )
    ce_near, ce_far = -math.log(3 / 4), -math.log(4 / 5)
    assert losses["loss_set_cls"].item() == pytest.approx((ce_near + 0.1 * ce_far) / 1.1, rel=1e-5)
    assert losses["loss_set_l1"].item() == pytest.approx(5 * 0.2, rel=1e-5)
    assert losses["loss_set_giou"].item() == pytest.approx(2 * 0.5, rel=1e-5)


# ------------------------------------------------------------------------------- IA-BCE (AlignDETR)
# Four queries, one GT, k = 2 (cap 4 // 2 = 2): NEAR (p 0.6, IoU 0.5) and EXACT (p 0.7, IoU 1)
# are matched; two far boxes (p 0.1) are negatives.
#   t_near  = 0.6^0.25 * 0.5^0.75, t_exact = 0.7^0.25 * 1 -> EXACT has rank 0 (w 1), NEAR rank 1
#   (w = exp(-1 / 1.5) = 0.5134).
IA_PROBS = [0.6, 0.7, 0.1, 0.1]
IA_BOXES = [NEAR, GT[0].tolist(), [0.15, 0.15, 0.1, 0.1], [0.85, 0.85, 0.1, 0.1]]
T_NEAR, T_EXACT, W_NEAR = 0.6**0.25 * 0.5**0.75, 0.7**0.25, math.exp(-1 / 1.5)


def _ia_layer() -> dict:
    return _layer([[_logit(p)] for p in IA_PROBS], IA_BOXES)


def _bce(p: float, y: float) -> float:
    return -y * math.log(p) - (1 - y) * math.log(1 - p)


def test_matching_quality_by_hand_and_clamped_at_one_hundredth():
    # NEAR (IoU 0.5), the GT itself (IoU 1) and FAR (IoU 0: t = 0, clamped to 0.01).
    prob = torch.tensor([0.6, 0.7, 0.9], requires_grad=True)
    t = matching_quality(prob, torch.tensor([NEAR, GT[0].tolist(), FAR]), GT.repeat(3, 1), alpha=0.25)
    torch.testing.assert_close(t, torch.tensor([T_NEAR, T_EXACT, 0.01]))
    assert not t.requires_grad


def test_prime_sample_weights_rank_within_each_bag():
    quality = torch.tensor([0.3, 0.9, 0.5, 0.2, 0.4, 0.4])
    bag = torch.tensor([0, 0, 1, 1, 2, 2])
    w = prime_sample_weights(quality, bag, tau=1.5)
    second = math.exp(-1 / 1.5)
    torch.testing.assert_close(w, torch.tensor([second, 1.0, 1.0, second, 1.0, second]))
    assert w[0] == pytest.approx(0.5134, abs=1e-4)


def test_ia_bce_losses_by_hand():
    criterion = SetCriterion(class_loss="ia_bce", loss_weights=(1.0, 5.0, 2.0), match_num=(2,))
    losses = criterion([_ia_layer()], _targets(1))
    negatives = 2 * 0.1**GAMMA * -math.log(0.9)
    expected = _bce(0.6, T_NEAR * W_NEAR) + _bce(0.7, T_EXACT) + negatives
    assert losses["loss_set_cls"].item() == pytest.approx(expected, rel=1e-5)
    # EXACT has no box loss; NEAR's L1 0.2 and 1 - GIoU 0.5 are weighted by W_NEAR.
    assert losses["loss_set_l1"].item() == pytest.approx(5 * 0.2 * W_NEAR, rel=1e-5)
    assert losses["loss_set_giou"].item() == pytest.approx(2 * 0.5 * W_NEAR, rel=1e-5)


def test_ia_bce_quality_and_weights_carry_no_gradient():
    output = _ia_layer()
    losses = SetCriterion(class_loss="ia_bce", loss_weights=(1.0, 5.0, 2.0), match_num=(2,))([output], _targets(1))
    losses["loss_set_cls"].backward(retain_graph=True)
    # d BCE(x, y) / dx = p - y with the target held constant; a negative's
    # d [p^g * softplus(x)] / dx = g p^g (1 - p) softplus(x) + p^(g + 1).
    negative = GAMMA * 0.1**GAMMA * 0.9 * -math.log(0.9) + 0.1 ** (GAMMA + 1)
    analytic = torch.tensor([[[0.6 - T_NEAR * W_NEAR], [0.7 - T_EXACT], [negative], [negative]]])
    torch.testing.assert_close(output["logits"].grad, analytic)
    assert output["boxes"].grad is None  # the IoU in t does not reach the boxes
    output["logits"].grad = None
    (losses["loss_set_l1"] + losses["loss_set_giou"]).backward()
    assert output["logits"].grad is None  # nor do the weights w reach the logits


def test_match_num_per_layer_and_auxiliary_names():
    # The same predictions on both layers: the auxiliary layer (k = 2) matches NEAR and EXACT,
    # the last (k = 1) only EXACT, whose box losses are 0 and whose weight is 1.
    criterion = SetCriterion(class_loss="ia_bce", loss_weights=(1.0, 5.0, 2.0), match_num=(2, 1))
    losses = criterion([_ia_layer(), _ia_layer()], _targets(1))
    assert losses.keys() == {f"loss_set_{n}{s}" for n in ("cls", "l1", "giou") for s in ("", "_d0")}
    assert losses["loss_set_l1_d0"].item() == pytest.approx(5 * 0.2 * W_NEAR, rel=1e-5)
    assert losses["loss_set_l1"].item() == pytest.approx(0.0, abs=1e-6)
    last = _bce(0.7, T_EXACT) + 0.6**GAMMA * -math.log(0.4) + 2 * 0.1**GAMMA * -math.log(0.9)
    assert losses["loss_set_cls"].item() == pytest.approx(last, rel=1e-5)


def test_match_num_must_fit_the_layers():
    with pytest.raises(ValueError, match="length 1 or one entry per decoder layer"):
        SetCriterion(class_loss="ia_bce", match_num=(2, 2, 1))([_ia_layer(), _ia_layer()], _targets(1))
    for bad in ((), (0,), (2, 1.5)):
        with pytest.raises(ValueError, match="match_num"):
            SetCriterion(class_loss="ia_bce", match_num=bad)


# ----------------------------------------------------------------------------- empty, bad input
@pytest.mark.parametrize("class_loss", ["focal", "softmax", "ia_bce"])
def test_images_without_ground_truth_have_only_negative_terms(class_loss):
    criterion = SetCriterion(class_loss=class_loss)
    torch.manual_seed(0)
    num_logits = criterion.num_logits
    outputs = [
        {"logits": torch.randn(2, 4, num_logits, requires_grad=True), "boxes": torch.rand(2, 4, 4, requires_grad=True)}
        for _ in range(2)
    ]
    losses = criterion(outputs, _targets(0, 0, boxes=torch.zeros(0, 4)))
    logits = outputs[-1]["logits"].detach()
    if class_loss == "focal":
        expected = sigmoid_focal_loss(logits, torch.zeros_like(logits), reduction="sum")
    elif class_loss == "ia_bce":
        expected = (logits.sigmoid() ** GAMMA * -torch.log1p(-logits.sigmoid())).sum()
    else:
        expected = -logits.log_softmax(dim=-1)[..., -1].mean()  # all "no object": weights cancel
    torch.testing.assert_close(losses["loss_set_cls"], 2.0 * expected)  # num_boxes clamped at 1
    assert losses["loss_set_l1"].item() == 0 and losses["loss_set_giou"].item() == 0
    sum(losses.values()).backward()
    assert all(torch.isfinite(o["logits"].grad).all() for o in outputs)


def test_criterion_rejects_bad_input():
    with pytest.raises(ValueError, match="class_loss"):
        SetCriterion(class_loss="ce")
    with pytest.raises(ValueError, match="loss_weights"):
        SetCriterion(class_loss="focal", loss_weights=(1.0, 5.0))
    focal = SetCriterion(class_loss="focal")
    with pytest.raises(ValueError, match=r"logits \[B, Q, 1\]"):
        focal([_layer([[0.0, 0.0]], [NEAR])], _targets(1))  # softmax-shaped logits
    with pytest.raises(ValueError, match="one target dict per image"):
        focal([_layer([[0.0]], [NEAR])], _targets(1, 1))
    with pytest.raises(ValueError, match="at least one image"):
        focal([{"logits": torch.zeros(0, 4, 1), "boxes": torch.zeros(0, 4, 4)}], [])
    with pytest.raises(ValueError, match="at least one decoder layer"):
        focal([], _targets(1))
    with pytest.raises(ValueError, match="gt_labels"):
        focal([_layer([[0.0]], [NEAR])], [{"boxes": GT, "labels": torch.tensor([3])}])
