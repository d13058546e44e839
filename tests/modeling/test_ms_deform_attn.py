"""Multi-scale deformable attention (baselines spec 3.1, 4): the sampler against a brute-force
bilinear loop, autograd gradients, the original's initialisation and hand-computed sampling
locations, padding and shape errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ultradet.modeling.layers import ms_deform_attn as msda
from ultradet.modeling.layers.ms_deform_attn import MSDeformAttn, ms_deform_attn_sample

SHAPES = torch.tensor([[3, 4], [2, 5]])  # two levels, (H, W)
STARTS = torch.tensor([0, 12])


def brute_force_sample(value, shapes, locations, weights):
    """Eq. 3's inner sums with explicit bilinear interpolation: pixel ``(i, j)`` of a level sits
    at normalised ``((j + 0.5) / W, (i + 0.5) / H)``; corners outside the map contribute 0."""
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = locations.shape
    out = torch.zeros(n, lq, m * d, dtype=value.dtype)
    start = 0
    for level in range(n_levels):
        h, w = (int(v) for v in shapes[level])
        for b in range(n):
            for q in range(lq):
                for head in range(m):
                    for p in range(n_points):
                        x = locations[b, q, head, level, p, 0].item() * w - 0.5
                        y = locations[b, q, head, level, p, 1].item() * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        for xi in (x0, x0 + 1):
                            for yi in (y0, y0 + 1):
                                if 0 <= xi < w and 0 <= yi < h:
                                    corner = (1 - abs(x - xi)) * (1 - abs(y - yi))
                                    a = weights[b, q, head, level, p].item()
                                    pixel = value[b, start + yi * w + xi, head]
                                    out[b, q, head * d:(head + 1) * d] += a * corner * pixel
        start += h * w
    return out


def random_inputs(seed: int, *, n=2, lq=3, m=2, d=3, n_points=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = int((SHAPES[:, 0] * SHAPES[:, 1]).sum())
    value = torch.randn(n, s, m, d, generator=g, dtype=dtype)
    # [-0.3, 1.3]: some points lie partly or wholly outside the map.
    locations = torch.rand(n, lq, m, 2, n_points, 2, generator=g, dtype=dtype) * 1.6 - 0.3
    weights = torch.rand(n, lq, m, 2 * n_points, generator=g, dtype=dtype).softmax(-1).view(n, lq, m, 2, n_points)
    return value, locations, weights


def test_sampler_matches_brute_force_bilinear_loop_with_points_outside():
    value, locations, weights = random_inputs(0)
    # Hand-placed points: a pixel centre, the map's corner, half outside, wholly outside.
    locations[0, 0, 0, 0] = torch.tensor([[0.625, 0.5], [0.0, 0.0]], dtype=torch.float64)
    locations[0, 0, 1, 1] = torch.tensor([[1.05, 0.5], [-0.4, 1.6]], dtype=torch.float64)
    outside = ((locations < 0) | (locations > 1)).any(-1)
    assert outside.any() and (~outside).any()
    expected = brute_force_sample(value, SHAPES, locations, weights)
    got = ms_deform_attn_sample(value, SHAPES, locations, weights)
    assert got.shape == (2, 3, 6)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_sampler_reads_a_pixel_centre_exactly_and_zero_far_outside():
    value = torch.arange(12, dtype=torch.float64).view(1, 12, 1, 1)  # one 3 x 4 level
    weights = torch.ones(1, 2, 1, 1, 1, dtype=torch.float64)
    # Pixel (row 1, column 2) has its centre at x = 2.5 / 4, y = 1.5 / 3; its value is 1 * 4 + 2.
    locations = torch.tensor([[0.625, 0.5], [1.5, 0.5]], dtype=torch.float64).view(1, 2, 1, 1, 1, 2)
    out = ms_deform_attn_sample(value, SHAPES[:1], locations, weights)
    assert out.flatten().tolist() == [6.0, 0.0]


def test_sampler_gradients_match_finite_differences():
    value, locations, weights = random_inputs(1, n=1, lq=2, m=2, d=2, n_points=2)
    inputs = tuple(t.clone().requires_grad_() for t in (value, locations, weights))
    assert torch.autograd.gradcheck(lambda v, loc, w: ms_deform_attn_sample(v, SHAPES, loc, w), inputs)


def test_initial_offsets_form_eight_directions_scaled_by_point_index():
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=32, n_levels=2, n_heads=8, n_points=4)
    bias = module.sampling_offsets.bias.detach().view(8, 2, 4, 2)
    directions = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]
    per_level = [[[k * dx, k * dy] for k in (1, 2, 3, 4)] for dx, dy in directions]
    expected = torch.tensor(per_level, dtype=torch.float32).view(8, 1, 4, 2).expand(8, 2, 4, 2)
    torch.testing.assert_close(bias, expected, rtol=0, atol=1e-6)
    assert bias[0, 0].tolist() == [[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]]
    for param in (module.sampling_offsets.weight, module.attention_weights.weight, module.attention_weights.bias,
                  module.value_proj.bias, module.output_proj.bias):
        assert param.abs().max().item() == 0.0
    for proj in (module.value_proj, module.output_proj):
        bound = math.sqrt(6.0 / (32 + 32))  # Xavier-uniform
        assert 0.5 * bound < proj.weight.abs().max().item() <= bound


def spy_on_sampler(monkeypatch) -> list[tuple]:
    """The arguments of every call of the module's sampler."""
    calls = []

    def spy(value, shapes, locations, weights):
        calls.append((locations.detach(), weights.detach()))
        return ms_deform_attn_sample(value, shapes, locations, weights)

    monkeypatch.setattr(msda, "ms_deform_attn_sample", spy)
    return calls


def test_initial_attention_is_uniform_and_locations_follow_the_bias(monkeypatch):
    calls = spy_on_sampler(monkeypatch)
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=8, n_points=4)
    query, inputs = torch.randn(1, 3, 16), torch.randn(1, 22, 16)
    ref = torch.rand(1, 3, 2, 2)
    module(query, ref, inputs, SHAPES, STARTS)
    locations, weights = calls[0]
    torch.testing.assert_close(weights, torch.full((1, 3, 8, 2, 4), 1 / 8))
    # Head 1, level 1 (H 2, W 5), point 3 (index 2): offset (3, 3) pixels.
    torch.testing.assert_close(locations[0, :, 1, 1, 2], ref[0, :, 1] + torch.tensor([3 / 5, 3 / 2]))


def hand_set_module(offsets: list[tuple[float, float]], n_points: int) -> MSDeformAttn:
    """Two heads of (x, y) channels, identity projections, constant offsets (pixels) per head and
    point, uniform attention."""
    module = MSDeformAttn(d_model=4, n_levels=1, n_heads=2, n_points=n_points)
    with torch.no_grad():
        for proj in (module.value_proj, module.output_proj):
            proj.weight.copy_(torch.eye(4))
        module.sampling_offsets.bias.copy_(torch.tensor(offsets).flatten())
    return module


def coordinate_map(h: int, w: int) -> torch.Tensor:
    """``FloatTensor[1, h*w, 4]``: every pixel's value is its centre's normalised (x, y), twice
    (one copy per head), so bilinear sampling between pixel centres returns the location."""
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    xy = torch.stack([xs, ys], dim=-1).reshape(1, h * w, 2)
    return torch.cat([xy, xy], dim=-1)


def test_2d_reference_points_move_by_offsets_in_pixels_of_the_level():
    # Map 4 x 8 (H x W); head 0 offset (1.5, -0.5) px, head 1 (-2, 1) px; one point. Every
    # location stays between the outer pixel centres, where interpolation is exactly linear.
    module = hand_set_module([(1.5, -0.5), (-2.0, 1.0)], n_points=1)
    ref = torch.tensor([[0.5, 0.5], [0.375, 0.5]]).view(1, 2, 1, 2)
    out = module(torch.zeros(1, 2, 4), ref, coordinate_map(4, 8), torch.tensor([[4, 8]]), torch.tensor([0]))
    expected = [
        [0.5 + 1.5 / 8, 0.5 - 0.5 / 4, 0.5 - 2 / 8, 0.5 + 1 / 4],
        [0.375 + 1.5 / 8, 0.5 - 0.5 / 4, 0.375 - 2 / 8, 0.5 + 1 / 4],
    ]
    torch.testing.assert_close(out[0], torch.tensor(expected), rtol=0, atol=1e-6)


def test_4d_reference_boxes_scale_offsets_by_half_the_box_over_points():
    # Two points per head, uniform weights: the output is the mean of the two locations.
    module = hand_set_module([(2.0, 0.0), (-1.0, 1.0), (0.0, -2.0), (2.0, 2.0)], n_points=2)
    ref = torch.tensor([0.5, 0.5, 0.4, 0.2]).view(1, 1, 1, 4)  # cx, cy, w, h
    out = module(torch.zeros(1, 1, 4), ref, coordinate_map(4, 8), torch.tensor([[4, 8]]), torch.tensor([0]))
    # location = c + offset / 2 * (w, h) * 0.5 = c + offset * (0.1, 0.05)
    head0 = [(0.5 + 0.2, 0.5), (0.5 - 0.1, 0.5 + 0.05)]
    head1 = [(0.5, 0.5 - 0.1), (0.5 + 0.2, 0.5 + 0.1)]
    expected = [sum(p[i] for p in head) / 2 for head in (head0, head1) for i in (0, 1)]
    torch.testing.assert_close(out[0, 0], torch.tensor(expected), rtol=0, atol=1e-6)


def test_padding_mask_removes_the_padded_values():
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=3)
    with torch.no_grad():
        module.sampling_offsets.weight.normal_(0, 0.5)
        module.attention_weights.weight.normal_(0, 0.5)
        nn.init.normal_(module.value_proj.bias)
        nn.init.normal_(module.output_proj.bias)
    query, inputs, ref = torch.randn(2, 5, 8), torch.randn(2, 22, 8), torch.rand(2, 5, 2, 2)
    mask = torch.zeros(2, 22, dtype=torch.bool)
    mask[0, 8:] = True
    mask[1, 3:15] = True
    out = module(query, ref, inputs, SHAPES, STARTS, mask)
    changed = inputs.clone()
    changed[mask] = torch.randn(int(mask.sum()), 8) * 100
    torch.testing.assert_close(module(query, ref, changed, SHAPES, STARTS, mask), out)
    assert not torch.allclose(module(query, ref, inputs, SHAPES, STARTS), out)
    # Everything padded: every value is zero, only the output bias is left.
    everything = module(query, ref, inputs, SHAPES, STARTS, torch.ones(2, 22, dtype=torch.bool))
    torch.testing.assert_close(everything, module.output_proj.bias.detach().expand(2, 5, 8))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(value=torch.zeros(1, 21, 2, 3)), "S=21"),
        (dict(shapes=torch.tensor([3, 4])), "spatial_shapes must be"),
        (dict(locations=torch.zeros(1, 3, 2, 1, 2, 2)), "sampling_locations must be"),
        (dict(locations=torch.zeros(1, 3, 2, 2, 2, 3)), "sampling_locations must be"),
        (dict(weights=torch.zeros(1, 3, 2, 2, 3)), "attention_weights must be"),
    ],
)
def test_sampler_rejects_mismatched_shapes(change, match):
    args = dict(value=torch.zeros(1, 22, 2, 3), shapes=SHAPES, locations=torch.zeros(1, 3, 2, 2, 2, 2),
                weights=torch.zeros(1, 3, 2, 2, 2))
    args.update(change)
    with pytest.raises(ValueError, match=match):
        ms_deform_attn_sample(args["value"], args["shapes"], args["locations"], args["weights"])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(query=torch.zeros(1, 3, 6)), "query must be"),
        (dict(inputs=torch.zeros(1, 21, 8)), "S=21"),
        (dict(inputs=torch.zeros(2, 22, 8)), "input_flatten must be"),
        (dict(ref=torch.zeros(1, 3, 2, 3)), r"reference_points must be \[N, Lq, L, 2\]"),
        (dict(ref=torch.zeros(1, 3, 1, 2)), "reference_points must be"),
        (dict(shapes=SHAPES[:1], starts=STARTS[:1]), "spatial_shapes must be"),
        (dict(starts=torch.tensor([0, 11])), "level_start_index must be"),
        (dict(mask=torch.zeros(1, 22)), "input_padding_mask must be"),
        (dict(mask=torch.zeros(1, 21, dtype=torch.bool)), "input_padding_mask must be"),
    ],
)
def test_module_rejects_mismatched_inputs(change, match):
    module = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2)
    args = dict(query=torch.zeros(1, 3, 8), ref=torch.zeros(1, 3, 2, 2), inputs=torch.zeros(1, 22, 8),
                shapes=SHAPES, starts=STARTS, mask=None)
    args.update(change)
    with pytest.raises(ValueError, match=match):
        module(args["query"], args["ref"], args["inputs"], args["shapes"], args["starts"], args["mask"])


def test_heads_must_divide_d_model():
    with pytest.raises(ValueError, match="multiple of n_heads"):
        MSDeformAttn(d_model=30, n_heads=8)
