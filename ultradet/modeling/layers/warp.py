"""Backward warping of a feature map by a dense flow field (spec section 3.7, DFF-style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp(features: torch.Tensor, flow: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``warped[:, :, y, x] = features[:, :, y + flow_y(y, x), x + flow_x(y, x)] * scale[:, :, y, x]``.

    Bilinear sampling with border padding. The sampling grid is normalised with the
    ``align_corners=True`` convention (index ``i`` -> ``2 i / (n - 1) - 1``) **and**
    ``grid_sample`` is called with ``align_corners=True``, so an integer flow moves the map by
    exactly that many cells. (The original normalised this way but called ``grid_sample`` with
    the default ``align_corners=False``, a half-pixel shift plus a slight zoom; fixed here.)

    Args:
        features: ``FloatTensor[N, C, h, w]``, the context frames' maps.
        flow: ``FloatTensor[N, 2, h, w]``, (dx, dy) in cells of the map (res4 pixels) for every
            cell of the *current* frame: where its content lies in the context frame.
        scale: optional ``FloatTensor[N, C, h, w]`` DFF scale map (FlowNetS); None = 1.

    Returns:
        ``FloatTensor[N, C, h, w]``, the context maps aligned to the current frame.
    """
    n, _, h, w = features.shape
    ys = torch.arange(h, device=flow.device, dtype=flow.dtype).view(1, h, 1)
    xs = torch.arange(w, device=flow.device, dtype=flow.dtype).view(1, 1, w)
    # A 1-cell axis has a single sample; any normalised value reads it (avoid 0 / 0).
    gx = 2.0 * (xs + flow[:, 0]) / max(w - 1, 1) - 1.0
    gy = 2.0 * (ys + flow[:, 1]) / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(features.dtype)
    warped = F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return warped if scale is None else warped * scale
