"""Building blocks of the FCOS-style dense heads on one feature map (FCOS, Tian et al., ICCV 2019,
section 3.1 and its code's head; DeFCN's POTO head is FCOS's): the conv towers and their
initialisation, the locations of the map's cells, and the decoding of per-location (l, t, r, b)
distances into boxes. Shared by :class:`~ultradet.modeling.proposal_generator.poto.POTO` and
:class:`~ultradet.modeling.dense_heads.fcos.FCOSHead`. It lives here, not under ``dense_heads``,
because ``dense_heads`` imports POTO."""

from __future__ import annotations

import math

import torch
from torch import nn

# GroupNorm's group count in FCOS's towers (its code's ``NORM: GN``), also YOLOX's head with ``norm: gn``.
GN_GROUPS = 32


def conv_tower(channels: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` x (Conv3x3 ``channels`` -> ``channels``, GroupNorm(32), ReLU): FCOS's class or
    box tower (``NORM: GN``). ``channels`` must be a multiple of 32 (GroupNorm raises otherwise);
    ``num_convs = 0`` is the identity."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(GN_GROUPS, channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def prior_logit(prior_prob: float) -> float:
    """The logit whose sigmoid is ``prior_prob``: ``-log((1 - p) / p)`` (RetinaNet's prior, Lin
    et al. 2017, section 4.1)."""
    return -math.log((1 - prior_prob) / prior_prob)


def init_dense_head(head: nn.Module, cls_conv: nn.Conv2d, prior_prob: float) -> None:
    """RetinaNet's and FCOS's initialisation (also DeFCN's): every ``Conv2d`` of ``head`` (towers and output convs)
    N(0, 0.01^2) with zero bias, then ``cls_conv``'s bias at ``-log((1 - prior_prob) / prior_prob)``
    so that ``sigmoid(cls) = prior_prob`` everywhere at the start and the focal loss of the many
    background locations does not swamp training (RetinaNet, Lin et al. 2017, section 4.1).
    The convs are visited in ``head.modules()`` order, which fixes the random draws."""
    for module in head.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)
    nn.init.constant_(cls_conv.bias, prior_logit(prior_prob))


def grid_locations(grid_size: tuple[int, int], stride: int, device: torch.device) -> torch.Tensor:
    """The centres of the cells of an ``(h, w)`` map of ``stride`` pixels.

    Returns:
        ``FloatTensor[h * w, 2]``, (x, y) input-image pixels ``(stride * (j + 0.5), stride * (i + 0.5))``,
        row-major (row ``i``, column ``j``); for stride 16, FCOS's ``(16 j + 8, 16 i + 8)``.
    """
    h, w = grid_size
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def ltrb_to_boxes(locations: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Boxes from distances to their four sides (FCOS eq. 1 inverted).

    Args:
        locations: ``FloatTensor[N, 2]``, (x, y) pixels.
        ltrb: ``FloatTensor[..., N, 4]``, (l, t, r, b) pixel distances from each location.

    Returns:
        ``FloatTensor[..., N, 4]``, XYXY pixels ``(x - l, y - t, x + r, y + b)``, in ``ltrb``'s dtype.
    """
    xy = locations.to(ltrb.dtype)
    return torch.cat([xy - ltrb[..., :2], xy + ltrb[..., 2:]], dim=-1)
