"""Flow-guided feature aggregation (Zhu et al., "Flow-Guided Feature Aggregation for Video Object
Detection", ICCV 2017, section 3.2, eq. 1-3; the UltraDet repository's FGFA baseline, baselines
spec 1.3): an embedding network and the per-pixel cosine-softmax weighted mean of feature maps."""

from __future__ import annotations

import torch
from torch import nn

_NORM_EPS = 1e-10


class EmbedNet(nn.Module):
    """Conv1x1 -> ReLU -> Conv3x3 (pad 1) -> ReLU -> Conv1x1, all ``channels -> channels``;
    Kaiming-uniform (a = 1) weights, zero biases (baselines spec 1.3).

    Args:
        channels: channels of the aggregated maps (res4: 256).
    """

    def __init__(self, *, channels: int = 256):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, channels, 1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 1),
        )
        for module in self.layers:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)
                nn.init.zeros_(module.bias)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """``FloatTensor[N, C, h, w] -> FloatTensor[N, C, h, w]``."""
        return self.layers(maps)


def aggregation_weights(current: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """FGFA's adaptive weights (eq. 3): cosine similarity of each reference embedding to the
    current one at every pixel, ``e / (||e|| + 1e-10)`` per vector, softmax over the references
    independently at every pixel.

    Args:
        current: ``FloatTensor[C, h, w]``, embedding of the current frame's map.
        references: ``FloatTensor[R, C, h, w]``, embeddings of the (warped) reference maps.

    Returns:
        ``FloatTensor[R, h, w]``, non-negative, summing to 1 over ``R`` at every pixel.
    """
    current = current / (current.norm(dim=0, keepdim=True) + _NORM_EPS)
    references = references / (references.norm(dim=1, keepdim=True) + _NORM_EPS)
    return (references * current[None]).sum(dim=1).softmax(dim=0)
