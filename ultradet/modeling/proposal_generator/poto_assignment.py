"""Label assignment of DeFCN's POTO (Wang et al., CVPR 2021, section 3.2, eq. 2-4) on one frame:
which locations may predict a GT box, the one-to-one Hungarian assignment that maximises the
prediction-aware quality, and the many-to-one auxiliary assignment (section 3.4) as the original
code does it (the UltraDet repository's ``proposal_generator/defcn.py:get_aux_ground_truth``)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment


def quality(prob: torch.Tensor, iou: torch.Tensor, alpha: float) -> torch.Tensor:
    """DeFCN eq. 3: ``Q = p^(1 - alpha) * IoU^alpha``.

    Args:
        prob: ``FloatTensor[N]``, foreground probability of each location.
        iou: ``FloatTensor[K, N]``, IoU of each GT with each location's predicted box.

    Returns:
        ``FloatTensor[K, N]`` in [0, 1].
    """
    return prob[None].pow(1 - alpha) * iou.pow(alpha)


def inside_mask(locations: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """Location ``(x, y)`` lies strictly inside GT box ``i``: all four distances to its sides are
    positive (the original's ``get_deltas(shifts, boxes).min(dim=-1).values > 0``).

    Args:
        locations: ``FloatTensor[N, 2]``, (x, y) pixels. gt_boxes: ``FloatTensor[K, 4]``, XYXY pixels.

    Returns:
        ``BoolTensor[K, N]``.
    """
    x, y = locations[None, :, 0], locations[None, :, 1]
    x1, y1, x2, y2 = (gt_boxes[:, i, None] for i in range(4))
    return (x > x1) & (x < x2) & (y > y1) & (y < y2)


def candidate_mask(locations: torch.Tensor, gt_boxes: torch.Tensor, radius: float) -> torch.Tensor:
    """The spatial prior Omega_i of DeFCN eq. 3 (FCOS centre sampling): location ``(x, y)`` may
    predict GT ``i`` iff it lies inside the box and within ``radius`` pixels (Chebyshev) of its
    centre. A GT with no such location (a box smaller than the grid) gets its nearest location,
    so that every GT can be learnt.

    Args:
        locations: ``FloatTensor[N, 2]``, (x, y) pixels. gt_boxes: ``FloatTensor[K, 4]``, XYXY.
        radius: ``center_sampling_radius * stride``, pixels.

    Returns:
        ``BoolTensor[K, N]``.
    """
    x, y = locations[None, :, 0], locations[None, :, 1]
    cx = (gt_boxes[:, 0, None] + gt_boxes[:, 2, None]) / 2
    cy = (gt_boxes[:, 1, None] + gt_boxes[:, 3, None]) / 2
    central = ((x - cx).abs() < radius) & ((y - cy).abs() < radius)
    mask = inside_mask(locations, gt_boxes) & central
    nearest = ((x - cx) ** 2 + (y - cy) ** 2).argmin(dim=1)
    orphans = ~mask.any(dim=1)
    mask[orphans, nearest[orphans]] = True
    return mask


def one_to_one_assignment(scores: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """POTO's bipartite matching (DeFCN eq. 2): each GT gets at most one location, each location
    at most one GT, only among candidates; among such matchings, one covering the most GTs and,
    among those, maximising the summed score (Hungarian algorithm, ``linear_sum_assignment``).

    Args:
        scores: ``FloatTensor[K, N]``, values in [0, 1] (the quality).
        candidates: ``BoolTensor[K, N]``.

    Returns:
        ``(gt_index, location_index)``: two ``LongTensor[M]``, ``M <= min(K, N)``, on the
        device of ``scores``.
    """
    k = scores.shape[0]
    # A non-candidate pair costs more than any sum of K scores in [0, 1] can win back, so the
    # optimum first maximises the number of candidate pairs; those pairs are then dropped.
    penalty = float(k + 1)
    profit = torch.where(candidates, scores, torch.full_like(scores, -penalty)).detach().cpu().double().numpy()
    rows, cols = linear_sum_assignment(profit, maximize=True)
    keep = candidates.cpu().numpy()[rows, cols]
    rows, cols = torch.from_numpy(rows[keep]), torch.from_numpy(cols[keep])
    return rows.to(scores.device), cols.to(scores.device)


def auxiliary_assignment(scores: torch.Tensor, inside: torch.Tensor, topk: int) -> torch.Tensor:
    """Many-to-one assignment of DeFCN's auxiliary loss (section 3.4), as the original code:

    1. for each GT, its ``topk`` locations by score over **all** locations (not only the
       centre-sampling candidates, not only those inside the box);
    2. threshold = mean + std of these ``topk`` scores, with the **unbiased** std (``ddof=1``,
       ``torch.std``'s default, as the original); the top-k locations outside the box count in
       the mean and std;
    3. a location is foreground for the GT iff it is among the top-k, scores at least the
       threshold and lies inside the GT box (``inside``);
    4. a location foreground for several GTs goes to the one where it scores highest.

    Args:
        scores: ``FloatTensor[K, N]``, the quality (DeFCN eq. 3) in [0, 1], one row per GT.
        inside: ``BoolTensor[K, N]``, :func:`inside_mask`.
        topk: ``aux_topk`` (9); fewer when ``N < topk``.

    Returns:
        ``LongTensor[N]``: the GT index of each location, -1 for background. With a single
        score (``N = 1`` or ``topk = 1``) the std is taken as 0, so that score is foreground if
        inside (the original's ``std`` is NaN there and nothing is foreground).
    """
    k, n = scores.shape
    if k == 0:
        return torch.full((n,), -1, dtype=torch.long, device=scores.device)
    top, index = scores.topk(min(topk, n), dim=1)
    std = top.std(dim=1, keepdim=True) if top.shape[1] > 1 else torch.zeros_like(top)
    threshold = top.mean(dim=1, keepdim=True) + std
    in_topk = torch.zeros_like(inside).scatter_(1, index, True)
    foreground = in_topk & (scores >= threshold) & inside
    best = torch.where(foreground, scores, torch.full_like(scores, -1.0)).max(dim=0)
    return torch.where(best.values >= 0, best.indices, torch.full_like(best.indices, -1))
