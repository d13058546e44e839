"""DeFCN's 3D max filtering (Wang et al., "End-to-End Object Detection with Fully Convolutional
Network", CVPR 2021, section 3.3, eq. 5): a learnable, differentiable stand-in for NMS's
duplicate removal inside the network."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaxFiltering3D(nn.Module):
    """``y^s = ReLU(GN(x^s + max_{k in [s - tau//2, s + tau//2]} max_{j in N_phi(i)} conv(x)^k_j))``:
    each position takes the maximum of a conv of the features over a ``kernel_size`` x
    ``kernel_size`` spatial window and over the ``tau // 2`` neighbouring pyramid levels on
    either side (resized to its level), added to its input (eq. 5 plus DeFCN's residual).

    The "3D" is (scale, y, x), never time: frames are never mixed, so the filter stays causal.
    With the single res4 level of this project the scale window holds one level and the filter is
    a ``kernel_size`` x ``kernel_size`` spatial max.

    Args:
        channels: feature channels (the GroupNorm uses 32 groups, so a multiple of 32).
        kernel_size: spatial window (odd; 3).
        tau: scale window, levels ``s - tau // 2 .. s + tau // 2`` (2).

    Raises:
        ValueError: even ``kernel_size``.
    """

    def __init__(self, *, channels: int, kernel_size: int = 3, tau: int = 2):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"filter_kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(32, channels)
        self.kernel_size = kernel_size
        self.margin = tau // 2

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        """
        Args:
            levels: feature maps ``FloatTensor[N, C, h_s, w_s]``, one per pyramid level.

        Returns:
            Filtered maps of the same shapes.
        """
        convolved = [self.conv(x) for x in levels]
        outputs = []
        for s, x in enumerate(levels):
            window = range(max(0, s - self.margin), min(len(levels), s + self.margin + 1))
            resized = [
                convolved[k] if k == s else F.interpolate(convolved[k], size=x.shape[-2:], mode="bilinear")
                for k in window
            ]
            scale_max = torch.stack(resized).amax(dim=0)
            spatial_max = F.max_pool2d(scale_max, self.kernel_size, stride=1, padding=self.kernel_size // 2)
            outputs.append(F.relu(self.norm(x + spatial_max)))
        return outputs
