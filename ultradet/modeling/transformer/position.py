"""The sine position code of DETR and Deformable DETR (DETR, Carion et al. 2020, section 3.2 and
its supplement; the original's ``layers/position_encoding.py``, baselines spec 3.1)."""

from __future__ import annotations

import math

import torch


def sine_position_encoding(
    height: int,
    width: int,
    *,
    num_feats: int = 128,
    temperature: float = 10000.0,
    device: torch.device | None = None,
) -> torch.Tensor:
    """The 2-d sine/cosine position code of an unpadded ``height x width`` map.

    Each axis' 1-based pixel index ``i`` is normalised as ``(i - 0.5) / n * 2 pi`` (Deformable
    DETR's -0.5 offset, ``n`` the axis length) and encoded with ``num_feats`` features:
    ``sin(x / temperature^(2k / num_feats))`` at even feature ``2k`` and ``cos`` of the same at
    ``2k + 1``. The y code comes first, then the x code.

    Returns:
        ``FloatTensor[2 * num_feats, height, width]``.

    Raises:
        ValueError: ``num_feats`` is odd or a size is not positive.
    """
    if num_feats % 2 or height < 1 or width < 1:
        raise ValueError(f"need an even num_feats and a non-empty map, got {num_feats} features, {height} x {width}")
    scale, eps = 2 * math.pi, 1e-6
    y = (torch.arange(1, height + 1, device=device, dtype=torch.float32) - 0.5) / (height + eps) * scale
    x = (torch.arange(1, width + 1, device=device, dtype=torch.float32) - 0.5) / (width + eps) * scale
    k = torch.arange(num_feats, device=device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / num_feats)

    def encode(values: torch.Tensor) -> torch.Tensor:  # [n] -> [n, num_feats], sin/cos interleaved
        phase = values[:, None] / dim_t
        return torch.stack((phase[:, 0::2].sin(), phase[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, num_feats)
    pos_x = encode(x)[None, :, :].expand(height, width, num_feats)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).contiguous()
