"""Anchor boxes of a single feature level (Ren et al., "Faster R-CNN", NeurIPS 2015, section 3.1.1;
detectron2's ``DefaultAnchorGenerator`` conventions, spec section 3.3)."""

from __future__ import annotations

import math

import torch


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
