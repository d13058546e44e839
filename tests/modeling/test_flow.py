"""Optical flow estimators and feature warping (spec 3.7): units, sign, the align-corners fix."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ultradet.config import ConfigError, load_config
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
    assert net.predict_flow2.weight.grad.abs().sum() > 0 and net.scale.weight.grad.abs().sum() > 0


def test_flownets_odd_input_sizes_crop_decoder_maps():
    net = FlowNetS(feature_channels=4, width=8)
    flow, scale = net(torch.randn(2, 3, 100, 76), torch.randn(2, 3, 100, 76), (7, 5))
    assert flow.shape == (2, 2, 7, 5) and scale.shape == (2, 4, 7, 5)


def _original_layout(net: FlowNetS) -> dict:
    """``net``'s tensors under the original flownet.ckpt names, spelt out by hand."""
    convs = ["conv1", "conv2", "conv3", "conv3_1", "conv4", "conv4_1", "conv5", "conv5_1", "conv6", "conv6_1"]
    state = {}
    for name in convs + ["deconv5", "deconv4", "deconv3", "deconv2"]:
        state[f"{name}.0.weight"] = getattr(net, name).weight.detach().clone()
        state[f"{name}.0.bias"] = getattr(net, name).bias.detach().clone()
    for level in (6, 5, 4, 3, 2):
        state[f"predict_flow{level}.weight"] = getattr(net, f"predict_flow{level}").weight.detach().clone()
        state[f"predict_flow{level}.bias"] = getattr(net, f"predict_flow{level}").bias.detach().clone()
    for level in (6, 5, 4, 3):
        name = f"upsampled_flow{level}_to_{level - 1}"
        state[f"{name}.weight"] = getattr(net, name).weight.detach().clone()
    return state


def test_flownets_loads_the_original_checkpoint_layout_and_trains_end_to_end(tmp_path):
    torch.manual_seed(0)
    source = FlowNetS(feature_channels=4, width=8)
    torch.nn.init.normal_(source.predict_flow2.weight, std=0.1)
    torch.nn.init.normal_(source.predict_flow2.bias, std=0.1)
    state = _original_layout(source)
    assert {"conv3_1.0.weight", "deconv5.0.weight", "predict_flow6.weight", "upsampled_flow6_to_5.weight"} <= set(state)
    path = tmp_path / "flownet.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    torch.manual_seed(1)
    loaded = FlowNetS(feature_channels=4, width=8, weights=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key  # scale: zero in both
    current, context = shifted_pair(1, 0)
    torch.testing.assert_close(loaded(current, context, (8, 8)), source(current, context, (8, 8)))
    assert all(p.requires_grad for p in loaded.parameters())  # not frozen: trains with the detector
    with pytest.raises(FileNotFoundError, match="flow.weights"):
        FlowNetS(weights=str(tmp_path / "missing.pth"))


def test_flownets_checkpoint_of_another_width_is_refused(tmp_path):
    path = tmp_path / "flownet.ckpt"
    torch.save(_original_layout(FlowNetS(feature_channels=4, width=8)), path)
    with pytest.raises(ValueError, match=r"conv1.weight: checkpoint \(8, 6, 7, 7\) vs model \(16, 6, 7, 7\)"):
        FlowNetS(feature_channels=4, width=16, weights=str(path))


def test_registry_and_from_config():
    assert {"farneback", "dis", "flownets"} <= set(FLOW_ESTIMATORS)
    assert isinstance(build_flow(load_config()), FarnebackFlow)  # the default: auto without weights
    with pytest.raises(ConfigError, match="takes none"):
        load_config(overrides={"model.flow.name": "dis", "model.flow.weights": "f.ckpt"})
    cfg = load_config(overrides={"model.flow.name": "dis", "model.pixel_mean": [0, 0, 0]})
    estimator = build_flow(cfg)
    assert isinstance(estimator, DISFlow) and estimator.pixel_mean == (0, 0, 0)


def test_auto_is_flownets_with_weights(tmp_path):
    path = tmp_path / "flownet.ckpt"
    torch.save(_original_layout(FlowNetS()), path)
    cfg = load_config(overrides={"model.flow.weights": str(path)})
    assert cfg.model.flow.estimator == "flownets" and isinstance(build_flow(cfg), FlowNetS)
