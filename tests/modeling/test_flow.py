"""Optical flow estimators and feature warping (spec 3.7): units, sign, the align-corners fix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ultradet.config import load_config
from ultradet.modeling.layers.flow import DISFlow, FarnebackFlow, FlowNetS, build_flow
from ultradet.modeling.layers.warp import warp
from ultradet.modeling.registry import FLOW_ESTIMATORS

MEAN = torch.tensor((123.675, 116.28, 103.53)).view(1, 3, 1, 1)
STD = torch.tensor((58.395, 57.12, 57.375)).view(1, 3, 1, 1)
SIZE = 128  # -> 8 x 8 res4 grid


def shifted_pair(dx_cells: int, dy_cells: int):
    """Normalised ``(current, context)`` ``[1, 3, 128, 128]`` of a smooth texture with
    ``current(p) = context(p + 16 * (dx, dy))``: the true flow is ``(dx, dy)`` res4 cells."""
    g = torch.Generator().manual_seed(0)
    texture = F.interpolate(torch.rand(1, 1, 8, 8, generator=g), size=(SIZE + 64, SIZE + 64), mode="bicubic")
    texture = (texture * 255).clamp(0, 255).expand(1, 3, -1, -1)
    current = texture[..., 32 : 32 + SIZE, 32 : 32 + SIZE]
    y0, x0 = 32 - 16 * dy_cells, 32 - 16 * dx_cells
    context = texture[..., y0 : y0 + SIZE, x0 : x0 + SIZE]
    return (current - MEAN) / STD, (context - MEAN) / STD


def test_warp_by_integer_flow_is_an_exact_shift():
    features = torch.randn(2, 5, 6, 7)
    flow = torch.zeros(2, 2, 6, 7)
    flow[:, 0] = 1.0  # read one cell to the right
    warped = warp(features, flow)
    assert torch.allclose(warped[..., :-1], features[..., 1:], atol=1e-6)
    assert torch.allclose(warped[..., -1], features[..., -1], atol=1e-6)  # border padding
    assert torch.allclose(warp(features, torch.zeros_like(flow)), features, atol=1e-6)
    scale = torch.full_like(features, 2.0)
    assert torch.allclose(warp(features, torch.zeros_like(flow), scale), 2 * features, atol=1e-6)


def test_warp_handles_single_cell_axes():
    features = torch.randn(1, 3, 1, 4)
    assert torch.allclose(warp(features, torch.zeros(1, 2, 1, 4)), features, atol=1e-6)


@pytest.mark.parametrize("estimator", [FarnebackFlow, DISFlow])
def test_classical_flow_recovers_known_translation_and_warp_aligns_features(estimator):
    current, context = shifted_pair(dx_cells=-1, dy_cells=1)
    flow, scale = estimator()(current, context, (8, 8))
    assert scale is None and flow.shape == (1, 2, 8, 8)
    interior = flow[0, :, 2:6, 2:6]
    assert torch.allclose(interior[0], torch.tensor(-1.0), atol=0.15)
    assert torch.allclose(interior[1], torch.tensor(1.0), atol=0.15)
    # A context map that moved with the image: context_map(q) = current_map(q - flow).
    current_map = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    context_map = torch.zeros_like(current_map)
    context_map[..., 1:, :-1] = current_map[..., :-1, 1:]
    aligned = warp(context_map, flow)
    error = (aligned - current_map)[..., 2:6, 2:6].abs().mean()
    assert error < 0.15 < (context_map - current_map)[..., 2:6, 2:6].abs().mean()


@pytest.mark.parametrize("estimator", [FarnebackFlow, DISFlow])
def test_classical_flow_identical_frames_zero_and_deterministic(estimator):
    current, context = shifted_pair(1, 0)
    flow, _ = estimator()(current, current, (8, 8))
    assert flow.abs().max() < 0.01
    first, _ = estimator()(current, context, (8, 8))
    second, _ = estimator()(current, context, (8, 8))
    assert torch.equal(first, second) and not first.requires_grad


def test_classical_flow_units_do_not_depend_on_downscale():
    current, context = shifted_pair(0, 1)
    fine, _ = FarnebackFlow(downscale=2)(current, context, (8, 8))
    coarse, _ = FarnebackFlow(downscale=4)(current, context, (8, 8))
    assert torch.allclose(fine[..., 2:6, 2:6], coarse[..., 2:6, 2:6], atol=0.15)


def test_flownets_starts_as_identity_and_learns_through_warp():
    torch.manual_seed(0)
    net = FlowNetS(feature_channels=4, width=8)
    current, context = shifted_pair(1, 0)
    flow, scale = net(current, context, (8, 8))
    assert flow.shape == (1, 2, 8, 8) and scale.shape == (1, 4, 8, 8)
    assert torch.all(flow == 0) and torch.all(scale == 1)
    features = torch.randn(1, 4, 8, 8)
    warp(features, flow, scale).square().sum().backward()
    assert net.flow.weight.grad.abs().sum() > 0 and net.scale.weight.grad.abs().sum() > 0


def test_flownets_weights_are_loaded_and_frozen(tmp_path):
    torch.manual_seed(0)
    source = FlowNetS(feature_channels=4, width=8)
    torch.nn.init.normal_(source.flow.weight)
    path = tmp_path / "flownet.pth"
    torch.save(source.state_dict(), path)
    loaded = FlowNetS(feature_channels=4, width=8, weights=str(path))
    assert torch.equal(loaded.flow.weight, source.flow.weight)
    assert not any(p.requires_grad for p in loaded.parameters())
    with pytest.raises(FileNotFoundError, match="flow.weights"):
        FlowNetS(weights=str(tmp_path / "missing.pth"))


def test_registry_and_from_config():
    assert {"farneback", "dis", "flownets"} <= set(FLOW_ESTIMATORS)
    assert isinstance(build_flow(load_config()), FarnebackFlow)  # the default
    cfg = load_config(overrides={"model.roi_heads.flow.name": "dis", "model.pixel_mean": [0, 0, 0]})
    estimator = build_flow(cfg)
    assert isinstance(estimator, DISFlow) and estimator.pixel_mean == (0, 0, 0)
