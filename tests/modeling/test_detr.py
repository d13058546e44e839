"""The set-prediction detectors' own parts: position code, inverse sigmoid, iterative box
refinement, head initialisation, test-time selection, and a short overfit that lowers every loss."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from modeltoy import TINY_DETR, lesion_clip, overfit_history, tiny_config
from ultradet.modeling import build_model
from ultradet.modeling.transformer import DeformableTransformer, sine_position_encoding
from ultradet.modeling.transformer.deformable import inverse_sigmoid

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def test_sine_position_code_hand_values():
    # 2 x 3 map, 4 features per axis: dim_t = 10000^(0, 0, 0.5, 0.5) = (1, 1, 100, 100).
    pos = sine_position_encoding(2, 3, num_feats=4)
    assert pos.shape == (8, 2, 3)
    y = (2 - 0.5) / 2 * 2 * math.pi  # row 1 (1-based index 2)
    x = (1 - 0.5) / 3 * 2 * math.pi  # column 0
    expected = [math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100)]
    expected += [math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100)]
    torch.testing.assert_close(pos[:, 1, 0], torch.tensor(expected), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="even num_feats"):
        sine_position_encoding(2, 3, num_feats=5)


def test_inverse_sigmoid_round_trip_and_finite_at_the_edges():
    x = torch.tensor([0.01, 0.2, 0.5, 0.93])
    torch.testing.assert_close(inverse_sigmoid(x).sigmoid(), x)
    torch.testing.assert_close(inverse_sigmoid(torch.logit(x).sigmoid()), torch.logit(x))
    edges = inverse_sigmoid(torch.tensor([0.0, 1.0]))
    assert torch.isfinite(edges).all() and edges[0] < -11 and edges[1] > 11


class Recorder(torch.nn.Module):
    """A decoder layer stand-in that records the reference points it is given."""

    def __init__(self, layer):
        super().__init__()
        self.layer, self.references = layer, []

    def forward(self, tgt, query_pos, reference_points, *args):
        self.references.append(reference_points)
        return self.layer(tgt, query_pos, reference_points, *args)


@pytest.mark.parametrize("refine", [True, False])
def test_box_refinement_feeds_each_layers_boxes_detached_to_the_next(refine):
    torch.manual_seed(0)
    t = DeformableTransformer(
        d_model=32, num_heads=4, encoder_layers=1, decoder_layers=3, dim_feedforward=64, dropout=0.0,
        num_levels=1, num_points=2, num_queries=5, box_refine=refine,
    )
    t.decoder = torch.nn.ModuleList(Recorder(layer) for layer in t.decoder)
    heads = [torch.nn.Linear(32, 4) for _ in range(3)]  # random deltas, so every layer moves the boxes
    _, boxes = t([torch.randn(2, 32, 4, 5)], heads)
    refs = [layer.references[0][:, :, 0] for layer in t.decoder]  # level 0 of [N, Q, L, 2|4]
    query_pos = t.query_embed.weight[:, :32]
    torch.testing.assert_close(refs[0], t.reference_points(query_pos).sigmoid().expand(2, -1, -1))
    for layer in range(3):
        ref = refs[layer]
        if refine and layer > 0:
            torch.testing.assert_close(ref, boxes[layer - 1])
            assert not ref.requires_grad  # detached between layers
        elif layer > 0:
            torch.testing.assert_close(ref, refs[0])  # 2-d references throughout
    # With a 2-d reference only (x, y) move by the reference's logit: w, h are sigmoid(delta).
    assert refs[0].shape[-1] == 2 and (refs[1].shape[-1] == 4) == refine


def test_deformdetr_heads_start_as_the_original():
    model = build_model(tiny_config(EXPERIMENTS / "deformdetr.yaml", **TINY_DETR))
    assert len(model.class_heads) == len(model.box_heads) == 4
    assert len({id(h) for h in model.box_heads}) == 4  # refinement: one pair per layer
    for i, (cls_head, box_head) in enumerate(zip(model.class_heads, model.box_heads)):
        torch.testing.assert_close(cls_head.bias, torch.full((1,), -math.log(99)))
        last = box_head.layers[-1]
        assert (last.weight == 0).all()
        assert last.bias.tolist() == ([0.0, 0.0, -2.0, -2.0] if i == 0 else [0.0, 0.0, 0.0, 0.0])
    detr = build_model(tiny_config(EXPERIMENTS / "detr.yaml", **TINY_DETR))
    assert detr.class_head.out_features == 2  # lesion + no object


@pytest.mark.parametrize("name, nms", [("deformdetr", 0.7), ("detr", None)])
def test_detect_returns_the_best_queries_of_the_last_layer_in_input_pixels(name, nms):
    model = build_model(tiny_config(EXPERIMENTS / f"{name}.yaml", **TINY_DETR, model__detr__detections_per_image=3)).eval()
    images = model.normalise(lesion_clip(1)["images"])
    out = model.detect(images)
    last = model.predict(model.backbone(images))[-1]
    logits = last["logits"][0]
    scores = logits.softmax(-1)[:, 0] if name == "detr" else logits[:, 0].sigmoid()
    assert len(out["scores"]) <= 3 and (out["scores"][:-1] >= out["scores"][1:]).all()
    if nms is None:
        torch.testing.assert_close(out["scores"], scores.sort(descending=True).values[:3])
    h, w = images.shape[-2:]
    cx, cy = last["boxes"][0, scores.argmax(), :2]
    top = out["boxes"][0]
    torch.testing.assert_close(((top[0] + top[2]) / 2 / w, (top[1] + top[3]) / 2 / h), (cx, cy))


# IA-BCE's class target is the matched query's quality t = p^0.25 IoU^0.75 itself, so its loss
# (at best the entropy of t) rises as t moves from the prior's ~0.1 towards 0.5: for AlignDETR
# the test asks that the boxes' losses fall and the best query find the lesion.
@pytest.mark.parametrize("name", ["deformdetr", "detr", "deformdetr_align"])
def test_overfit_one_clip_lowers_every_loss_and_finds_the_lesion(name):
    torch.manual_seed(0)
    cfg = tiny_config(EXPERIMENTS / f"{name}.yaml", **TINY_DETR, model__detr__dropout=0.0)
    clip = lesion_clip(3, size=128, lesion=40)
    model = build_model(cfg).train()
    history = overfit_history(model, clip, steps=40, lr=5e-4)
    terms = ("loss_set_l1", "loss_set_giou") + (() if name == "deformdetr_align" else ("loss_set_cls",))
    for term in terms:
        start, end = history[0][term], sum(step[term] for step in history[-5:]) / 5
        assert end <= 0.6 * start, (term, start, end)
    model.eval()
    best = model.detect(model.normalise(clip["images"][:1]))["boxes"][:1]
    assert box_iou(best, clip["boxes"][0]).item() > 0.5
