"""ResNet-18/34 trunk up to res4: one C4 feature map, 256 channels, stride 16 (spec section 3.2,
He et al., "Deep Residual Learning", CVPR 2016, table 1; detectron2's ``build_resnet_backbone``
with ``OUT_FEATURES=["res4"]``).

Module names follow ``torchvision.models.resnet`` (``conv1``, ``bn1``, ``layer1..layer3``), so a
torchvision ResNet state dict loads directly; pretrained weights are loaded by
:func:`ultradet.modeling.pretrained.load_pretrained` once the whole detector is built.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import FrozenBatchNorm2d

from ultradet.config import ExperimentConfig

# BasicBlocks per stage res2, res3, res4 (He et al. 2016, table 1).
_BLOCKS = {18: (2, 2, 2), 34: (3, 4, 6)}
_NORMS = {"frozen_bn": FrozenBatchNorm2d, "bn": nn.BatchNorm2d}


class ResNetC4(nn.Module):
    """ResNet stem + res2..res4.

    Args:
        depth: 18 or 34.
        norm: ``"frozen_bn"`` (statistics and affine fixed) or ``"bn"``. Frozen stages always use
            FrozenBN: a frozen stage must not update running statistics either.
        freeze_at: 0 freezes nothing, 1 the stem, 2 stem + res2, 3 + res3, 4 + res4
            (detectron2's ``FREEZE_AT``). Freezing only sets ``requires_grad``, so weights loaded
            after construction stay frozen.

    Raises:
        ValueError: unknown depth / norm, or freeze_at outside 0..4.
    """

    out_channels = 256
    stride = 16

    def __init__(self, *, depth: int = 34, norm: str = "frozen_bn", freeze_at: int = 2):
        super().__init__()
        if depth not in _BLOCKS:
            raise ValueError(f"unsupported ResNet depth {depth}; expected one of {sorted(_BLOCKS)}")
        if norm not in _NORMS:
            raise ValueError(f"unknown norm '{norm}'; expected one of {sorted(_NORMS)}")
        if not 0 <= freeze_at <= 4:
            raise ValueError(f"freeze_at must be in 0..4, got {freeze_at}")

        def norm_of(stage: int):
            return FrozenBatchNorm2d if stage < freeze_at else _NORMS[norm]

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_of(0)(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        widths, strides = (64, 128, 256), (1, 2, 2)
        in_ch = 64
        for i, (blocks, width, stride) in enumerate(zip(_BLOCKS[depth], widths, strides)):
            self.add_module(f"layer{i + 1}", _stage(in_ch, width, blocks, stride, norm_of(i + 1)))
            in_ch = width
        self._init_weights()
        self._freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "ResNetC4":
        b = cfg.model.backbone
        return cls(depth=b.depth, norm=b.norm, freeze_at=b.freeze_at)

    def _init_weights(self) -> None:
        # MSRA init (He et al. 2015), as torchvision's ResNet.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def _freeze(self, freeze_at: int) -> None:
        stages = [nn.ModuleList([self.conv1, self.bn1]), self.layer1, self.layer2, self.layer3]
        for stage in stages[:freeze_at]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """
        Args:
            images: ``FloatTensor[N, 3, H, W]``, normalised.

        Returns:
            ``FloatTensor[N, 256, ceil(H / 16), ceil(W / 16)]``, the res4 map.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer3(self.layer2(self.layer1(x)))


def _stage(in_ch: int, width: int, blocks: int, stride: int, norm_layer) -> nn.Sequential:
    """``blocks`` BasicBlocks; the first changes stride/width through a 1x1 projection shortcut."""
    shortcut = None
    if stride != 1 or in_ch != width:
        shortcut = nn.Sequential(nn.Conv2d(in_ch, width, 1, stride=stride, bias=False), norm_layer(width))
    layers = [BasicBlock(in_ch, width, stride, shortcut, norm_layer=norm_layer)]
    layers += [BasicBlock(width, width, norm_layer=norm_layer) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def build_backbone(cfg: ExperimentConfig) -> ResNetC4:
    """The backbone of ``cfg.model.backbone``."""
    return ResNetC4.from_config(cfg)
