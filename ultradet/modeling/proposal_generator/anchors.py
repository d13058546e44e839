"""Anchor boxes of a single feature level (Ren et al., "Faster R-CNN", NeurIPS 2015, section 3.1.1;
detectron2's ``DefaultAnchorGenerator`` conventions, spec section 3.3) and their IoU labelling
against GT boxes (the RPN's and RetinaNet's, detectron2's ``Matcher``)."""

from __future__ import annotations

import math

import torch
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou


def cell_anchors(sizes: tuple[float, ...], aspect_ratios: tuple[float, ...]) -> torch.Tensor:
    """Anchors centred on (0, 0), one per (size, aspect ratio), sizes outer, ratios inner.

    An anchor of size ``s`` and aspect ratio ``a = h / w`` has area ``s^2``: ``w = s / sqrt(a)``,
    ``h = s * sqrt(a)`` (not rounded).

    Returns:
        ``FloatTensor[len(sizes) * len(aspect_ratios), 4]``, XYXY pixels.
    """
    anchors = []
    for size in sizes:
        for ratio in aspect_ratios:
            w = size / math.sqrt(ratio)
            h = size * math.sqrt(ratio)
            anchors.append([-w / 2, -h / 2, w / 2, h / 2])
    return torch.tensor(anchors, dtype=torch.float32)


def grid_anchors(cell: torch.Tensor, grid_size: tuple[int, int], stride: int, offset: float = 0.0) -> torch.Tensor:
    """Shift ``cell`` anchors (``[A, 4]``) to every location of an ``(h, w)`` feature grid.

    Location ``(i, j)`` is the image point ``(stride * (j + offset), stride * (i + offset))``;
    detectron2's default offset is 0 (the top-left corner of the cell).

    Returns:
        ``FloatTensor[h * w * A, 4]``, XYXY pixels, ordered (row, column, anchor) - the order of a
        ``[h, w, A]`` head output flattened.
    """
    h, w = grid_size
    ys = (torch.arange(h, dtype=cell.dtype, device=cell.device) + offset) * stride
    xs = (torch.arange(w, dtype=cell.dtype, device=cell.device) + offset) * stride
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    shifts = torch.stack([x, y, x, y], dim=-1).reshape(-1, 1, 4)
    return (shifts + cell.view(1, -1, 4)).reshape(-1, 4)


def label_anchors(anchors: torch.Tensor, gt_boxes: torch.Tensor, matcher: Matcher) -> tuple[torch.Tensor, torch.Tensor]:
    """Label one frame's anchors by their IoU with its GT boxes (detectron2's ``Matcher`` with
    labels ``[0, -1, 1]``: below ``matcher.low_threshold`` background, from it up to
    ``matcher.high_threshold`` ignored, at or above it foreground).

    With ``allow_low_quality_matches`` the anchors of highest IoU with each GT (ties included)
    are foreground whatever their IoU, matched to the GT of their own highest IoU, which is not
    necessarily the GT they are best for: torchvision's and detectron2's rule alike.

    Args:
        anchors: ``FloatTensor[N, 4]``, XYXY pixels.
        gt_boxes: ``FloatTensor[K, 4]``, XYXY pixels; K may be 0 (every anchor is background).
        matcher: torchvision's ``Matcher(high, low, allow_low_quality_matches)``.

    Returns:
        ``labels``: ``FloatTensor[N]``, 1 foreground, 0 background, -1 ignored;
        ``matched_gt``: ``FloatTensor[N, 4]``, the matched GT box of each anchor (meaningful
        for foreground anchors only).
    """
    if len(gt_boxes) == 0:  # torchvision's Matcher refuses an empty GT set
        return anchors.new_zeros(len(anchors)), torch.zeros_like(anchors)
    matched = matcher(box_iou(gt_boxes, anchors))
    labels = (matched >= 0).to(anchors.dtype)
    labels[matched == Matcher.BETWEEN_THRESHOLDS] = -1
    return labels, gt_boxes[matched.clamp(min=0)]
