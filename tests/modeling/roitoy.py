"""Tiny random inputs for the RoI-head tests: 64 x 64 frames -> 4 x 4 res4 maps (stride 16)."""

from __future__ import annotations

import torch

SIZE = 64
CHANNELS = 256
D_MODEL = 32

# Small versions of the paper's head settings, shared by every head test.
HEAD_KWARGS = dict(
    d_model=D_MODEL,
    pooler_resolution=4,
    norm="bn",
    batch_size_per_image=8,
    relation_layers=2,
    relation_heads=4,
)


def random_boxes(n: int, generator: torch.Generator, size: int = SIZE) -> torch.Tensor:
    """``FloatTensor[n, 4]`` valid XYXY boxes inside a ``size`` x ``size`` frame."""
    xy = torch.rand(n, 2, generator=generator) * (size - 12)
    wh = 8 + torch.rand(n, 2, generator=generator) * (size - 8 - xy).clamp(min=1)
    return torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)


def clip_inputs(frames: int, proposals: int, gt_per_frame: list[int], seed: int = 0):
    """Random ``(features [T, 256, 4, 4], proposals, targets, images [T, 3, 64, 64])``; targets'
    boxes are jittered copies of some proposals so that foreground RoIs exist."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(frames, CHANNELS, SIZE // 16, SIZE // 16, generator=g)
    images = torch.randn(frames, 3, SIZE, SIZE, generator=g)
    props, targets = [], []
    for k in gt_per_frame:
        boxes = random_boxes(proposals, g)
        props.append({"boxes": boxes, "scores": torch.rand(proposals, generator=g)})
        gt = (boxes[:k] + torch.randn(k, 4, generator=g)).clamp(0, SIZE)
        targets.append({"boxes": gt, "labels": torch.zeros(k, dtype=torch.long)})
    return features, props, targets, images


def video_frames(frames: int, proposals: int, seed: int = 0):
    """A list of per-frame ``(features [1, 256, 4, 4], proposals dict, image [1, 3, 64, 64])``."""
    features, props, _, images = clip_inputs(frames, proposals, [0] * frames, seed)
    return [(features[t : t + 1], props[t], images[t : t + 1]) for t in range(frames)]
