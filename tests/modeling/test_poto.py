"""POTO / DeFCN: assignment against brute force, hand-computed pieces, losses, proposals."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from ultradet.config import load_config
from ultradet.modeling.proposal_generator.max_filter import MaxFiltering3D
from ultradet.modeling.proposal_generator.poto import POTO, _joint_logit
from ultradet.modeling.proposal_generator.poto_assignment import (
    auxiliary_assignment,
    candidate_mask,
    inside_mask,
    one_to_one_assignment,
    quality,
)
from ultradet.modeling.registry import PROPOSAL_GENERATORS


def _brute_force(scores: torch.Tensor, candidates: torch.Tensor) -> tuple[int, float]:
    """Best (number of candidate pairs, their summed score) over every injective GT -> location map."""
    k, n = scores.shape
    best = (-1, -1.0)
    for locations in itertools.permutations(range(n), k):
        pairs = [(i, j) for i, j in enumerate(locations) if candidates[i, j]]
        value = (len(pairs), sum(float(scores[i, j]) for i, j in pairs))
        best = max(best, value)
    return best


@pytest.mark.parametrize("k, n", [(3, 5), (4, 4), (2, 6), (1, 3)])
@pytest.mark.parametrize("seed", range(5))
def test_one_to_one_assignment_is_the_brute_force_optimum(k, n, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(k, n, generator=g)
    candidates = torch.rand(k, n, generator=g) < 0.6 if seed else torch.ones(k, n, dtype=torch.bool)
    gt, loc = one_to_one_assignment(scores, candidates)
    assert len(set(gt.tolist())) == len(gt) and len(set(loc.tolist())) == len(loc)  # one-to-one
    assert candidates[gt, loc].all()
    count, total = _brute_force(scores, candidates)
    assert len(gt) == count
    assert math.isclose(float(scores[gt, loc].sum()), total, rel_tol=1e-6, abs_tol=1e-9)


def test_quality_is_geometric_mix_of_probability_and_iou():
    q = quality(torch.tensor([0.25, 1.0]), torch.tensor([[0.5, 0.0]]), alpha=0.8)
    torch.testing.assert_close(q, torch.tensor([[0.25**0.2 * 0.5**0.8, 0.0]]))


def test_candidates_are_inside_box_and_near_centre_with_orphan_fallback():
    locations = torch.tensor([[8.0, 8.0], [24.0, 8.0], [40.0, 8.0], [56.0, 8.0]])
    gt = torch.tensor([[0.0, 0.0, 64.0, 16.0], [41.0, 2.0, 44.0, 5.0]])
    mask = candidate_mask(locations, gt, radius=1.0 * 16)
    # GT 0 (centre x = 32): |8 - 32| = 24 and |56 - 32| = 24 exceed 16. GT 1 contains no location:
    # its nearest one (x = 40) is used.
    assert mask.tolist() == [[False, True, True, False], [False, False, True, False]]


def test_inside_mask_is_strict():
    locations = torch.tensor([[8.0, 8.0], [24.0, 8.0], [40.0, 8.0]])
    # x = 24 lies on the right edge of GT 0: not inside (the original's min(deltas) > 0).
    gt = torch.tensor([[0.0, 0.0, 24.0, 16.0], [0.0, 0.0, 48.0, 16.0]])
    assert inside_mask(locations, gt).tolist() == [[True, False, False], [True, True, True]]


# One GT, 12 locations; location 0 scores best but lies outside the GT box.
AUX_SCORES = torch.tensor([[0.95, 0.90, 0.83, 0.60, 0.55, 0.50, 0.45, 0.40, 0.35, 0.30, 0.10, 0.05]])
AUX_INSIDE = torch.tensor([[False] + [True] * 11])


def test_auxiliary_top_k_is_over_all_locations_with_the_unbiased_std_and_kept_inside_the_box():
    # Top-9 over all 12 locations, location 0 included: 0.95, 0.90, 0.83, 0.60, 0.55, 0.50, 0.45,
    # 0.40, 0.35; sum 5.53, mean 0.61444; squared deviations sum to 0.40102; unbiased std
    # sqrt(0.40102 / 8) = 0.22389 -> threshold 0.83834. 0.95 and 0.90 pass; 0.95 lies outside
    # the box and is dropped; 0.83 is below (the population std, sqrt(0.40102 / 9) = 0.21109,
    # would give 0.82553 and keep it).
    assert auxiliary_assignment(AUX_SCORES, AUX_INSIDE, topk=9).tolist() == [-1, 0] + [-1] * 10
    # Had the top-9 been taken among the inside locations only (0.90 ... 0.30: mean 0.54111,
    # threshold 0.74565 unbiased), 0.83 would be foreground too: the outside location counts in
    # the threshold although it cannot be foreground.
    inside_only = torch.where(AUX_INSIDE, AUX_SCORES, torch.zeros_like(AUX_SCORES))
    assert auxiliary_assignment(inside_only, AUX_INSIDE, topk=9).tolist() == [-1, 0, 0] + [-1] * 9


def test_auxiliary_location_outside_the_box_is_foreground_once_inside():
    assert auxiliary_assignment(AUX_SCORES, torch.ones_like(AUX_INSIDE), topk=9).tolist() == [0, 0] + [-1] * 10


def test_auxiliary_single_location_is_its_own_threshold():
    assert auxiliary_assignment(torch.tensor([[0.3]]), torch.tensor([[True]]), topk=9).tolist() == [0]


def test_auxiliary_location_shared_by_two_gts_goes_to_the_higher_score():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.1, 0.0]])
    # GT 0: mean 0.3333 + unbiased std 0.4933 = 0.8266; GT 1: 0.2 + 0.2646 = 0.4646. Location 0
    # passes for both and goes to GT 0, where it scores 0.9.
    assert auxiliary_assignment(scores, torch.ones(2, 3, dtype=torch.bool), topk=3).tolist() == [0, -1, -1]


def test_joint_logit_is_logit_of_product():
    a, b = torch.linspace(-30, 30, 13), torch.linspace(20, -20, 13)
    torch.testing.assert_close(_joint_logit(a, b).sigmoid(), a.sigmoid() * b.sigmoid())


def test_single_level_max_filter_is_spatial_max_plus_residual():
    torch.manual_seed(0)
    module = MaxFiltering3D(channels=32, kernel_size=3, tau=2)
    x = torch.randn(2, 32, 5, 6)
    conv = module.conv(x)
    padded = F.pad(conv, (1, 1, 1, 1), value=-math.inf)
    window_max = torch.stack([padded[..., i : i + 5, j : j + 6] for i in range(3) for j in range(3)]).amax(0)
    torch.testing.assert_close(module([x])[0], F.relu(module.norm(x + window_max)))


def test_max_filter_takes_max_over_neighbouring_levels():
    torch.manual_seed(0)
    module = MaxFiltering3D(channels=32, kernel_size=1, tau=2)
    levels = [torch.randn(1, 32, 4, 4), torch.randn(1, 32, 4, 4), torch.randn(1, 32, 4, 4)]
    convs = [module.conv(x) for x in levels]
    out = module(levels)
    # Level 0 sees levels 0-1 (tau // 2 = 1 on either side), level 1 sees 0-2.
    torch.testing.assert_close(out[0], F.relu(module.norm(levels[0] + torch.maximum(convs[0], convs[1]))))
    torch.testing.assert_close(out[1], F.relu(module.norm(levels[1] + torch.stack(convs).amax(0))))


def _poto(**kwargs) -> POTO:
    torch.manual_seed(0)
    return POTO(**{"num_convs": 1, **kwargs})


def _features(frames=3, h=4, w=4, seed=0):
    return torch.randn(frames, 256, h, w, generator=torch.Generator().manual_seed(seed))


TARGETS = [
    {"boxes": torch.tensor([[10.0, 10.0, 42.0, 42.0]]), "labels": torch.zeros(1, dtype=torch.long)},
    {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    {"boxes": torch.tensor([[0.0, 0.0, 60.0, 30.0], [20, 20, 50, 64]]), "labels": torch.zeros(2, dtype=torch.long)},
]


def test_prior_prob_sets_initial_classification_probability():
    poto = _poto(prior_prob=0.01)
    torch.testing.assert_close(poto.cls_score.bias.sigmoid(), torch.tensor([0.01]))


def test_box_bias_init_starts_every_side_alive():
    """FCOS's zero bias leaves about half of the (l, t, r, b) outputs at ReLU's zero, where a side
    gets no gradient; box_bias_init = 1 stride starts every one above it (CPU profile of DeFCN)."""
    features = _features(h=6, w=6)
    for bias, dead_range in ((0.0, (0.3, 0.7)), (1.0, (0.0, 0.0))):
        poto = _poto(box_bias_init=bias)
        torch.testing.assert_close(poto.box_pred.bias.detach(), torch.full((4,), bias))
        with torch.no_grad():
            raw = poto.box_pred(poto.box_tower(features))
        dead = float((raw * poto.box_scale <= 0).float().mean())
        assert dead_range[0] <= dead <= dead_range[1], (bias, dead)


def test_proposals_are_inside_the_image_and_at_most_num_proposals():
    poto = _poto(num_proposals=5).eval()
    proposals, losses = poto(_features(h=5, w=4), (80, 64))
    assert losses == {}
    for p in proposals:
        boxes = p["boxes"]
        assert 0 < len(boxes) <= 5
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 64).all() and (boxes[:, [1, 3]] <= 80).all()
        assert ((p["scores"] > 0) & (p["scores"] < 1)).all()


def _set_box_output(poto: POTO, raw: list[float], scale: float) -> None:
    """Make the box conv output ``raw`` (l, t, r, b) at every location, and ``box_scale`` = ``scale``."""
    torch.nn.init.zeros_(poto.box_pred.weight)
    with torch.no_grad():
        poto.box_pred.bias.copy_(torch.tensor(raw))
        poto.box_scale.fill_(scale)


def test_location_centres():
    poto = _poto()
    grid = poto.locations((2, 3), torch.device("cpu"))
    torch.testing.assert_close(grid[[0, 5]], torch.tensor([[8.0, 8.0], [40.0, 24.0]]))


@pytest.mark.parametrize(
    "stride, raw, scale, expected",
    [
        # (l, t, r, b) = ReLU(2 * (-1, 0.5, 2, 0.25)) * 16 = (0, 16, 64, 8) around (40, 24).
        (16, [-1.0, 0.5, 2.0, 0.25], 2.0, [40.0, 8.0, 104.0, 32.0]),
        # ReLU after the scale: ReLU(-1 * (-1, 0.5, 2, 0.25)) * 16 = (16, 0, 0, 0): a zero-height box.
        (16, [-1.0, 0.5, 2.0, 0.25], -1.0, [24.0, 24.0, 40.0, 24.0]),
        # Stride 8, location (20, 12): ReLU(0.5 * (2, 4, 1, -3)) * 8 = (8, 16, 4, 0).
        (8, [2.0, 4.0, 1.0, -3.0], 0.5, [12.0, -4.0, 24.0, 12.0]),
    ],
)
def test_box_decoding_is_relu_of_scaled_output_times_stride(stride, raw, scale, expected):
    poto = _poto(stride=stride)
    _set_box_output(poto, raw, scale)
    _, _, boxes = poto.predict(_features(1, 2, 3), poto.locations((2, 3), torch.device("cpu")))
    assert boxes.shape == (1, 6, 4)
    torch.testing.assert_close(boxes[0, 5], torch.tensor(expected))


def test_regression_loss_is_giou_of_the_decoded_box():
    poto = _poto(reg_weight=1.0).train()
    _set_box_output(poto, [0.5, 0.5, 0.5, 0.5], 1.0)
    # A 1 x 1 grid: the only location (8, 8) is matched to the GT (0, 0, 24, 24). It predicts
    # 0.5 stride = 8 pixels each side: (0, 0, 16, 16). IoU = 256 / 576, the enclosing box is the
    # GT = the union, so the GIoU loss is 1 - 4 / 9.
    target = [{"boxes": torch.tensor([[0.0, 0.0, 24.0, 24.0]]), "labels": torch.zeros(1, dtype=torch.long)}]
    _, losses = poto(_features(1, 1, 1), (16, 16), target)
    torch.testing.assert_close(losses["loss_poto_reg"], torch.tensor(1 - 4 / 9))


def test_auxiliary_targets_are_the_locations_inside_the_box_not_only_the_central_ones():
    # No tower: the box conv sees the features directly. In each frame one location has a box,
    # set through a feature channel and the box conv's centre tap; every other box is empty
    # (IoU 0). The cls conv is uniform, so only the IoU ranks the locations.
    poto = _poto(num_convs=0)
    with torch.no_grad():
        for conv in (poto.box_pred, poto.cls_score):
            conv.weight.zero_()
        poto.box_pred.bias.zero_()
        poto.box_pred.weight[:, 0, 1, 1] = torch.tensor([0.5, 0.5, 3.5, 1.5])  # (8, 8, 56, 24) pixels
        poto.box_pred.weight[:, 1, 1, 1] = torch.tensor([0.5, 2.5, 3.5, 0.0])  # (8, 40, 56, 0) pixels
    features = torch.zeros(2, 256, 4, 4)
    features[0, 0, 0, 0] = 1.0  # frame 0: location (8, 8), inside the GT but not central
    features[1, 1, 2, 0] = 1.0  # frame 1: location (8, 40), below the GT
    gt = torch.tensor([[0.0, 0.0, 64.0, 32.0]])
    targets = [{"boxes": gt, "labels": torch.zeros(1, dtype=torch.long)}] * 2
    grid = poto.locations((4, 4), torch.device("cpu"))
    cls_logits, filter_logits, boxes = poto.predict(features, grid)
    torch.testing.assert_close(boxes[0, 0], torch.tensor([0.0, 0.0, 64.0, 32.0]))  # IoU 1
    torch.testing.assert_close(boxes[1, 8], torch.tensor([0.0, 0.0, 64.0, 40.0]))  # IoU 0.8
    assigned = poto.assign(cls_logits, _joint_logit(cls_logits, filter_logits), boxes, grid, targets)
    # Frame 0: centre sampling (24 pixels around (32, 16)) excludes x = 8, so the one-to-one
    # target is elsewhere; the auxiliary one is this best box: quality q and 8 zeros in the
    # top-9, threshold q / 9 + q / 3 (unbiased std) < q.
    assert not candidate_mask(grid, gt, poto.radius)[0, 0]
    assert assigned.aux[0].nonzero().flatten().tolist() == [0]
    # Frame 1: the best box belongs to a location outside the GT box, so it is dropped, and the
    # zeros stay below the threshold: no auxiliary foreground.
    assert assigned.aux[1].sum() == 0


def test_losses_finite_with_empty_frames_and_one_positive_per_gt():
    poto = _poto().train()
    _, losses = poto(_features(), (64, 64), TARGETS)
    assert set(losses) == {"loss_poto_cls", "loss_poto_reg", "loss_poto_aux"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in (poto.cls_score.weight, poto.filter_score.weight, poto.box_pred.weight))


def test_all_empty_clip_has_zero_regression_loss_and_background_targets():
    poto = _poto(focal_alpha=0.25, focal_gamma=0.0).train()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    features = _features(2)
    _, losses = poto(features, (64, 64), empty)
    assert losses["loss_poto_reg"] == 0
    # gamma = 0: focal loss = (1 - alpha) * BCE(logit, 0) summed, divided by max(1, 0) = 1.
    cls_logits, filter_logits, _ = poto.predict(features, poto.locations((4, 4), torch.device("cpu")))
    expected = 0.75 * F.softplus(_joint_logit(cls_logits, filter_logits)).sum()
    torch.testing.assert_close(losses["loss_poto_cls"], expected)


def test_one_to_one_targets_one_candidate_location_per_gt():
    poto = _poto().train()
    grid = poto.locations((4, 4), torch.device("cpu"))
    cls_logits, filter_logits, boxes = poto.predict(_features(), grid)
    assigned = poto.assign(cls_logits, _joint_logit(cls_logits, filter_logits), boxes, grid, TARGETS)
    assert assigned.cls.sum(dim=1).tolist() == [1.0, 0.0, 2.0]
    assert assigned.frame_index.tolist() == [0, 2, 2]
    assert sorted(assigned.gt_boxes.tolist()) == sorted(t for f in TARGETS for t in f["boxes"].tolist())
    for t, n, gt in zip(assigned.frame_index, assigned.location_index, assigned.gt_boxes):
        assert candidate_mask(grid, gt[None], poto.radius)[0, n]
    # The auxiliary (many-to-one) assignment is denser; a frame without GT has none.
    assert (assigned.aux.sum(dim=1) >= assigned.cls.sum(dim=1)).all() and assigned.aux[1].sum() == 0


def test_same_seed_same_losses():
    def run():
        return _poto().train()(_features(), (64, 64), TARGETS)[1]

    assert run() == run()


def test_from_config_reads_the_poto_section():
    prefix = "model.poto."
    cfg = load_config(overrides={prefix + "poto_alpha": 0.3, prefix + "num_convs": 0})
    poto = PROPOSAL_GENERATORS.get("poto").from_config(cfg, in_channels=256, stride=16)
    assert poto.alpha == 0.3 and len(poto.cls_tower) == 0 and poto.radius == 1.5 * 16
