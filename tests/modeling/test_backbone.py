"""ResNet C4 backbone: shapes, depth, freezing (pretrained weights: test_pretrained.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from ultradet.modeling.backbone import ResNetC4


@pytest.mark.parametrize("size", [(64, 64), (65, 81), (33, 100)])
def test_output_is_c4_map_with_ceil_stride_16(size):
    backbone = ResNetC4(depth=18).eval()
    out = backbone(torch.randn(2, 3, *size))
    assert out.shape == (2, 256, math.ceil(size[0] / 16), math.ceil(size[1] / 16))


@pytest.mark.parametrize("depth, blocks", [(18, (2, 2, 2)), (34, (3, 4, 6))])
def test_depth_selects_basic_block_counts(depth, blocks):
    backbone = ResNetC4(depth=depth)
    assert tuple(len(getattr(backbone, f"layer{i}")) for i in (1, 2, 3)) == blocks


def _trainable_stages(backbone: ResNetC4) -> list[bool]:
    stages = [backbone.conv1, backbone.layer1, backbone.layer2, backbone.layer3]
    return [any(p.requires_grad for p in stage.parameters()) for stage in stages]


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3, 4])
def test_freeze_at_freezes_the_first_stages(freeze_at):
    backbone = ResNetC4(depth=18, norm="bn", freeze_at=freeze_at)
    assert _trainable_stages(backbone) == [i >= freeze_at for i in range(4)]
    # A frozen stage must not update BN statistics either: its norms are FrozenBN.
    norms = [backbone.bn1, backbone.layer1[0].bn1, backbone.layer2[0].bn1, backbone.layer3[0].bn1]
    assert [isinstance(n, FrozenBatchNorm2d) for n in norms] == [i < freeze_at for i in range(4)]
    assert all(isinstance(n, nn.BatchNorm2d) for n in norms[freeze_at:])


def test_frozen_bn_output_does_not_depend_on_mode():
    backbone = ResNetC4(depth=18, norm="frozen_bn", freeze_at=0)
    x = torch.randn(2, 3, 32, 32)
    train_out = backbone.train()(x)
    assert torch.equal(train_out, backbone.eval()(x))


@pytest.mark.parametrize("kwargs", [dict(depth=50), dict(norm="gn"), dict(freeze_at=5)])
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        ResNetC4(**kwargs)
