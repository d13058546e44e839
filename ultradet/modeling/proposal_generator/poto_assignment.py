"""Label assignment of DeFCN's POTO (Wang et al., CVPR 2021, section 3.2, eq. 2-4) on one frame:
which locations may predict a GT box, the one-to-one Hungarian assignment that maximises the
prediction-aware quality, and the many-to-one auxiliary assignment (section 3.4)."""

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
    x1, y1, x2, y2 = (gt_boxes[:, i, None] for i in range(4))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    inside = (x > x1) & (x < x2) & (y > y1) & (y < y2)
    central = ((x - cx).abs() < radius) & ((y - cy).abs() < radius)
    mask = inside & central
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


def auxiliary_assignment(scores: torch.Tensor, candidates: torch.Tensor, topk: int) -> torch.Tensor:
    """Many-to-one assignment of DeFCN's auxiliary loss (section 3.4): for each GT, its ``topk``
    candidates by score; those at or above ``mean + std`` of these top-k scores (an ATSS-style
    adaptive threshold, population std) are foreground. A location chosen by several GTs goes to
    the one where it scores highest.

    Args:
        scores: ``FloatTensor[K, N]``. candidates: ``BoolTensor[K, N]``. topk: ``aux_topk`` (9).

    Returns:
        ``LongTensor[N]``: the GT index of each location, -1 for background.
    """
    k, n = scores.shape
    if k == 0:
        return torch.full((n,), -1, dtype=torch.long, device=scores.device)
    masked = torch.where(candidates, scores, torch.full_like(scores, -1.0))
    top, index = masked.topk(min(topk, n), dim=1)
    valid = top >= 0
    count = valid.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (top * valid).sum(dim=1, keepdim=True) / count
    std = (((top - mean) ** 2) * valid).sum(dim=1, keepdim=True).div(count).sqrt()
    chosen = torch.zeros_like(candidates)
    # The tolerance keeps ties (std = 0: all top-k equal) on the foreground side despite rounding.
    chosen.scatter_(1, index, valid & (top >= mean + std - 1e-6))
    best = torch.where(chosen, masked, torch.full_like(masked, -2.0)).max(dim=0)
    return torch.where(best.values > -2.0, best.indices, torch.full_like(best.indices, -1))
