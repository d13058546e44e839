"""CVA-Net's ``Fuse`` (baselines spec 3.3): the only cross-frame operation of the original's
CVA-Net, a fixed channel down-sampling of two concatenated backbone maps."""

from __future__ import annotations

import torch


def channel_pair_fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The mean of each pair of adjacent channels of ``cat([a, b], channels)``.

    For ``a``, ``b`` ``FloatTensor[N, C, h, w]`` (C even) the output ``FloatTensor[N, C, h, w]``
    has channel ``k`` = (channel 2k + channel 2k+1 of the concatenation) / 2: channels
    ``0 .. C/2 - 1`` are pair means of ``a``, ``C/2 .. C - 1`` pair means of ``b``. No parameters.

    The original (``meta_arch/cva_net.py:25, 76-87``) gets this from ``AdaptiveAvgPool3d`` to
    ``(C, h, w)`` on the 4-d concatenation, whose first axis it pools as depth; written here as
    what it computes.

    Raises:
        ValueError: the maps differ in shape, or C is odd.
    """
    if a.shape != b.shape or a.shape[1] % 2:
        raise ValueError(
            f"channel_pair_fuse needs two maps of one shape with an even channel count, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    n, c, h, w = a.shape
    return torch.cat((a, b), 1).view(n, c, 2, h, w).mean(2)
