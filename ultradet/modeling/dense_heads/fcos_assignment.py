"""FCOS's training targets on one frame (Tian et al., ICCV 2019, section 3.1, eq. 1 and 3, with the
centre sampling of its later versions), as the UltraDet repository computes them for its one-level
FCOS (baselines spec 2.2, ``fcos_outputs.py:compute_targets_for_locations`` and
``get_sample_region``): which GT box each location regresses, its (l, t, r, b) distances and
its centerness target."""

from __future__ import annotations

import torch


def assign_locations(
    locations: torch.Tensor, gt_boxes: torch.Tensor, radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground locations of one frame and the GT box each regresses.

    A location ``(x, y)`` may regress GT box ``k`` iff it lies strictly inside the box's *sample
    region*: the square of half-side ``radius`` pixels around the box centre, clipped to the box
    (centre sampling, ``center_sampling_radius x stride`` = 1.5 x 16 = 24 px). A location in
    several sample regions regresses the GT of smallest area (FCOS section 3.1; the first of
    equal areas). One feature level takes every object size (the original's empty
    ``SIZES_OF_INTEREST``), so there is no size range. A GT whose sample region holds no location
    centre (e.g. a box narrower than the stride between two centres) gets no foreground location,
    as in the original.

    Args:
        locations: ``FloatTensor[N, 2]``, (x, y) pixels (cell centres).
        gt_boxes: ``FloatTensor[K, 4]``, XYXY pixels; ``K`` may be 0.
        radius: pixels.

    Returns:
        ``(matched, ltrb)``: ``LongTensor[N]``, the GT index of each location, -1 for background;
        ``FloatTensor[N, 4]``, (l, t, r, b) pixel distances from each location to the sides of
        its GT box (0 for background).

    Raises:
        ValueError: ``gt_boxes`` is not ``[K, 4]``.
    """
    if gt_boxes.dim() != 2 or gt_boxes.shape[1] != 4:
        raise ValueError(f"gt_boxes must be FloatTensor[K, 4] (XYXY pixels), got shape {tuple(gt_boxes.shape)}")
    n = len(locations)
    if len(gt_boxes) == 0:
        return torch.full((n,), -1, dtype=torch.long, device=locations.device), locations.new_zeros(n, 4)
    x, y = locations[:, 0, None], locations[:, 1, None]  # [N, 1]
    x1, y1, x2, y2 = gt_boxes.unbind(dim=1)  # [K] each
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    region_x1, region_y1 = torch.maximum(cx - radius, x1), torch.maximum(cy - radius, y1)
    region_x2, region_y2 = torch.minimum(cx + radius, x2), torch.minimum(cy + radius, y2)
    to_region = torch.stack([x - region_x1, y - region_y1, region_x2 - x, region_y2 - y], dim=2)
    in_region = to_region.min(dim=2).values > 0  # [N, K]
    area = ((x2 - x1) * (y2 - y1)).expand(n, -1)
    inf = torch.full_like(area, float("inf"))
    min_area, matched = torch.where(in_region, area, inf).min(dim=1)
    matched = torch.where(torch.isfinite(min_area), matched, torch.full_like(matched, -1))
    ltrb = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=2)  # [N, K, 4]
    ltrb = ltrb[torch.arange(n, device=locations.device), matched.clamp(min=0)]
    return matched, torch.where(matched[:, None] >= 0, ltrb, torch.zeros_like(ltrb))


def centerness_targets(ltrb: torch.Tensor) -> torch.Tensor:
    """FCOS eq. 3: ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``, in [0, 1], 1 at the
    box centre; the same in pixels or in strides.

    Args:
        ltrb: ``FloatTensor[M, 4]``, positive (l, t, r, b) distances of foreground locations.

    Returns:
        ``FloatTensor[M]``.
    """
    left_right, top_bottom = ltrb[:, [0, 2]], ltrb[:, [1, 3]]
    ratio_x = left_right.min(dim=1).values / left_right.max(dim=1).values
    ratio_y = top_bottom.min(dim=1).values / top_bottom.max(dim=1).values
    return torch.sqrt(ratio_x * ratio_y)
