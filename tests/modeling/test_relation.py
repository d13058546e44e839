"""Relation module (spec 3.5): geometric embedding values, masking, permutation equivariance."""

from __future__ import annotations

import math

import pytest
import torch

from ultradet.modeling.layers.relation import RelationLayers, RelationModule, geometric_embedding

BOX_A = (0.0, 0.0, 10.0, 20.0)  # cx 5, cy 10, w 10, h 20
BOX_B = (10.0, 10.0, 30.0, 50.0)  # cx 20, cy 30, w 20, h 40


def expected_embedding(q: tuple, k: tuple, dim: int) -> list[float]:
    """Spec 3.5 written out with ``math`` for one (query, key) pair."""
    (qx0, qy0, qx1, qy1), (kx0, ky0, kx1, ky1) = q, k
    qw, qh, kw, kh = qx1 - qx0, qy1 - qy0, kx1 - kx0, ky1 - ky0
    g = [
        math.log(abs((kx0 + kx1) / 2 - (qx0 + qx1) / 2) / kw + 1e-4),
        math.log(abs((ky0 + ky1) / 2 - (qy0 + qy1) / 2) / kh + 1e-4),
        math.log(qw / kw + 1e-4),
        math.log(qh / kh + 1e-4),
    ]
    steps = dim // 8
    angles = [gi * 100.0 / 1000.0 ** (i / steps) for gi in g for i in range(steps)]
    return [math.sin(a) for a in angles] + [math.cos(a) for a in angles]


def test_geometric_embedding_matches_hand_computed_values():
    boxes = torch.tensor([BOX_A, BOX_B], dtype=torch.float64)
    emb = geometric_embedding(boxes, boxes, 16)
    assert emb.shape == (2, 2, 16)
    for i, q in enumerate([BOX_A, BOX_B]):
        for j, k in enumerate([BOX_A, BOX_B]):
            assert emb[i, j].tolist() == pytest.approx(expected_embedding(q, k, 16), abs=1e-9)
    # A box with itself: offsets log(eps), ratios log(1 + eps); the first frequency is 100.
    assert emb[0, 0, 0].item() == pytest.approx(math.sin(100 * math.log(1e-4)))


def test_geometric_embedding_rejects_bad_dim():
    with pytest.raises(ValueError, match="multiple of 8"):
        geometric_embedding(torch.zeros(1, 4), torch.zeros(1, 4), 12)


def _tokens(n: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 20], dim=1)
    return torch.randn(n, d, generator=g), boxes


def test_relation_layers_shape_and_query_subset():
    torch.manual_seed(0)
    layers = RelationLayers(d_model=32, num_layers=2, num_heads=4)
    x, boxes = _tokens(7, 32)
    full = layers(x, boxes)
    assert full.shape == (7, 32)
    # Updating only the last 3 tokens in the last layer gives exactly their rows of the full pass.
    assert torch.allclose(layers(x, boxes, queries=slice(4, 7)), full[4:], atol=1e-6)


def test_masked_key_cannot_change_output():
    torch.manual_seed(0)
    layers = RelationLayers(d_model=32, num_layers=2, num_heads=4)
    x, boxes = _tokens(6, 32)
    mask = torch.tensor([True, True, False, True, True, True])
    out = layers(x, boxes, key_mask=mask)
    x2, boxes2 = x.clone(), boxes.clone()
    x2[2] += 10.0
    boxes2[2] += 7.0
    out2 = layers(x2, boxes2, key_mask=mask)
    keep = mask.clone()
    assert torch.allclose(out[keep], out2[keep], atol=1e-6)
    assert not torch.allclose(out[2], out2[2])  # the masked token is still a query


def test_unmasked_key_does_change_output():
    torch.manual_seed(0)
    module = RelationModule(d_model=32, num_heads=4)
    x, boxes = _tokens(4, 32)
    emb = geometric_embedding(boxes, boxes, 32)
    x2 = x.clone()
    x2[3] += 10.0
    assert not torch.allclose(module(x, emb)[0], module(x2, emb)[0])


def test_permutation_equivariance():
    torch.manual_seed(0)
    layers = RelationLayers(d_model=32, num_layers=2, num_heads=4)
    x, boxes = _tokens(8, 32)
    mask = torch.rand(8, generator=torch.Generator().manual_seed(1)) > 0.3
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(2))
    out = layers(x, boxes, key_mask=mask)
    assert torch.allclose(layers(x[perm], boxes[perm], key_mask=mask[perm]), out[perm], atol=1e-5)


def test_rejects_indivisible_d_model():
    with pytest.raises(ValueError, match="divisible"):
        RelationModule(d_model=36, num_heads=8)
