"""RoI feature extractor shared by every RoI head: RoIAlignV2 on res4 -> res5 stage -> spatial mean.

Source: spec section 3.4 (``Res5TemporalROIBoxHeads``); the res5 stage is built inside the head,
as in the C4 Faster R-CNN of Ren et al. (NeurIPS 2015) / He et al. (ResNet, CVPR 2016).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import FrozenBatchNorm2d, roi_align

_NORMS = {"frozen_bn": FrozenBatchNorm2d, "bn": nn.BatchNorm2d}


class RoIBoxEncoder(nn.Module):
    """Pools each box of a res4 map into one ``out_channels``-d RoI vector.

    RoIAlign with ``aligned=True`` (detectron2's "ROIAlignV2": the half-pixel shift that maps a
    continuous box coordinate ``x`` to feature coordinate ``x / stride - 0.5``), adaptive sampling
    ratio, ``pooler_resolution`` bins -> 3 BasicBlocks with strides [2, 1, 1]
    (``in_channels -> out_channels``, 1x1 projection shortcut on the first block only) -> mean over
    the remaining ``ceil(pooler_resolution / 2)`` squared positions.

    Args:
        in_channels: channels of the res4 map (256 for ResNet-18/34).
        out_channels: ``d_model``, the RoI vector size.
        stride: res4 stride w.r.t. the input image, in pixels (16).
        pooler_resolution: RoIAlign output size (14).
        norm: ``"frozen_bn"`` (detectron2 FrozenBN; with no pretrained res5 weights it is the
            identity) or ``"bn"``.

    Raises:
        ValueError: unknown ``norm``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 256,
        out_channels: int = 256,
        stride: int = 16,
        pooler_resolution: int = 14,
        norm: str = "frozen_bn",
    ):
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"unknown norm '{norm}'; expected one of {sorted(_NORMS)}")
        norm_layer = _NORMS[norm]
        shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), norm_layer(out_channels)
        )
        self.res5 = nn.Sequential(
            BasicBlock(in_channels, out_channels, 2, shortcut, norm_layer=norm_layer),
            BasicBlock(out_channels, out_channels, norm_layer=norm_layer),
            BasicBlock(out_channels, out_channels, norm_layer=norm_layer),
        )
        # res5 has no ImageNet weights that fit (spec 3.4), so it starts from MSRA init.
        for module in self.res5.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.stride = stride
        self.pooler_resolution = pooler_resolution
        self.out_channels = out_channels

    def forward(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            features: ``FloatTensor[B, in_channels, h, w]``, res4 maps.
            boxes: ``B`` tensors ``FloatTensor[R_b, 4]``, XYXY pixels of the input image; list
                entry ``b`` is pooled from ``features[b]``.

        Returns:
            ``FloatTensor[sum_b R_b, out_channels]``, rows in the order of ``boxes`` (b-major).
        """
        boxes = [b.to(features.dtype) for b in boxes]
        pooled = roi_align(
            features,
            boxes,
            output_size=self.pooler_resolution,
            spatial_scale=1.0 / self.stride,
            sampling_ratio=0,
            aligned=True,
        )
        return self.res5(pooled).mean(dim=(2, 3))
