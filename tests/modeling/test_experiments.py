"""Every model experiment file builds, trains one step and predicts a short video online (the
"fast dev run" of every config), and states the row it is in the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modeltoy import SIZE, TINY, lesion_clip
from ultradet.config import load_config, load_experiment
from ultradet.modeling import build_model
from ultradet.report.published import published_summary

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
NAMES = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))

# What each model is (spec section 6): (meta-architecture, RoI head, proposals, type, group);
# POTO variants differ only in the proposals, DeFCN's proposals are its detections.
TWO_STAGE = "Faster R-CNN-based"
EXPECTED = {
    "fasterrcnn": ("temporal_rcnn", "single_frame", "rpn", "Image", TWO_STAGE),
    "relationnet": ("temporal_rcnn", "frame_relation", "rpn", "Image", TWO_STAGE),
    "fgfa": ("fgfa", "single_frame", "rpn", "Video", TWO_STAGE),
    "selsa": ("temporal_rcnn", "selsa", "rpn", "Video", TWO_STAGE),
    "mega": ("temporal_rcnn", "mega", "rpn", "Video", TWO_STAGE),
    "basicdet": ("temporal_rcnn", "relation", "rpn", "Video", TWO_STAGE),
    "ultradet": ("temporal_rcnn", "ntca", "rpn", "Video", TWO_STAGE),
    "basicdet_poto": ("temporal_rcnn", "relation", "poto", "Video", TWO_STAGE),
    "ultradet_poto": ("temporal_rcnn", "ntca", "poto", "Video", TWO_STAGE),
    # One-stage: (meta-architecture, dense head, -, type, group).
    "defcn": ("one_stage", "poto", None, "Image", "One-stage"),
    "retinanet": ("one_stage", "retinanet", None, "Image", "One-stage"),
    "fcos": ("one_stage", "fcos", None, "Image", "One-stage"),
    "yolox": ("one_stage", "yolox", None, "Image", "One-stage"),
    "trackyolo": ("track_one_stage", "yolox", None, "Video", "One-stage"),
    # Set prediction: (meta-architecture, class loss, -, type, group).
    "deformdetr": ("deformable_detr", "focal", None, "Image", "DETR-based"),
    "detr": ("detr", "softmax", None, "Image", "DETR-based"),
    "deformdetr_align": ("deformable_detr", "ia_bce", None, "Image", "DETR-based"),
    "transvod": ("transvod", "focal", None, "Video", "DETR-based"),
    "cvanet": ("cva_net", "focal", None, "Video", "DETR-based"),
    "ptseformer": ("ptseformer", "focal", None, "Video", "DETR-based"),
}
# Rows of this project that the published table does not have.
ADDED = {"basicdet_poto", "ultradet_poto", "detr", "deformdetr_align"}


def test_every_model_has_an_experiment_file():
    assert set(EXPECTED) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_experiment_describes_its_model(name):
    cfg = load_experiment(name, experiments_dir=EXPERIMENTS)
    assert cfg.name == name and cfg.display_name
    meta, head, generator, kind, group = EXPECTED[name]
    m = cfg.model
    assert (m.meta_architecture, cfg.type, cfg.group) == (meta, kind, group)
    if meta in ("one_stage", "track_one_stage"):
        assert m.dense_head.name == head
    elif meta in ("detr", "deformable_detr", "transvod", "cva_net", "ptseformer"):
        assert m.set_criterion.class_loss == head
    else:
        assert (m.roi_heads.name, m.proposal_generator.name) == (head, generator)
    # The paper's settings stay the defaults (R34-C4, 16 proposals), but for the backbone's
    # initialisation, which the paper profile sets.
    assert cfg.model.backbone.depth == 34 and cfg.model.backbone.weights is None
    assert cfg.model.rpn.post_nms_topk_test == cfg.model.poto.num_proposals == 16


@pytest.mark.parametrize("name", NAMES)
def test_experiment_trains_one_step_and_predicts_online(name):
    cfg = load_experiment(name, experiments_dir=EXPERIMENTS, overrides=TINY)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.solver.base_lr)
    losses = model([lesion_clip(3, empty_frames=(2,))])
    sum(losses.values()).backward()
    optimizer.step()
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval().reset()
    outputs = [model.infer_frame(image, original_size=(2 * SIZE, SIZE)) for image in lesion_clip(4, seed=1)["images"]]
    assert all((o["boxes"][:, [1, 3]] <= 2 * SIZE).all() and (o["boxes"][:, [0, 2]] <= SIZE).all() for o in outputs)


@pytest.mark.parametrize("name", NAMES)
def test_paper_profile_starts_from_imagenet_r34_with_frozen_bn(name):
    cfg = load_experiment(name, experiments_dir=EXPERIMENTS, profile=EXPERIMENTS / "profiles" / "paper.yaml")
    b = cfg.model.backbone
    assert (b.depth, b.norm, b.freeze_at) == (34, "frozen_bn", 2)
    assert b.weights == "torchvision:ResNet34_Weights.IMAGENET1K_V1"


@pytest.mark.parametrize("name", NAMES)
def test_experiment_is_beside_its_published_row(name):
    # Added rows (POTO variants, DETR, AlignDETR) have no published row; every other experiment's
    # display name, group and type are exactly those of its row in the published table.
    cfg = load_experiment(name, experiments_dir=EXPERIMENTS)
    published = published_summary().drop_duplicates("display_name").set_index("display_name")
    if name in ADDED:
        assert cfg.display_name not in published.index
    else:
        assert (published.loc[cfg.display_name, "group"], published.loc[cfg.display_name, "type"]) == (cfg.group, cfg.type)


def test_experiment_overrides_merge_over_the_file():
    cfg = load_config(EXPERIMENTS / "ultradet_poto.yaml", overrides={"model.poto.poto_alpha": 0.5})
    assert cfg.name == "ultradet_poto" and cfg.model.roi_heads.name == "ntca"
    assert cfg.model.poto.poto_alpha == 0.5
