"""model.weights: a whole-detector checkpoint of one configuration starts another (detectron2's
MODEL.WEIGHTS): matching tensors are copied, the rest keep their initialisation and are reported."""

import pytest
import torch

from modeltoy import tiny_config
from ultradet.modeling import build_model
from ultradet.modeling.initial_weights import load_initial_weights


def _single_frame_checkpoint(tmp_path, **overrides):
    torch.manual_seed(1)
    model = build_model(tiny_config(model__roi_heads__name="single_frame", model__backbone__norm="bn",
                                    model__backbone__freeze_at=0, **overrides))
    path = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict(), "iteration": 7}, path)
    return model, path


def test_temporal_model_starts_from_a_single_frame_detector(tmp_path):
    source, path = _single_frame_checkpoint(tmp_path)
    torch.manual_seed(2)
    target = build_model(tiny_config(model__roi_heads__name="ntca", model__backbone__norm="bn",
                                     model__backbone__freeze_at=0, model__weights=str(path)))
    own, src = target.state_dict(), source.state_dict()
    shared = [k for k in own if k in src]
    assert shared and all(torch.equal(own[k], src[k]) for k in shared)
    fresh = build_model(tiny_config(model__roi_heads__name="ntca", model__backbone__norm="bn", model__backbone__freeze_at=0))
    report = load_initial_weights(fresh, path)
    assert set(report.matched) == set(shared)
    assert report.missing and all(k.startswith(("roi_heads.relation.", "roi_heads.ntca.")) for k in report.missing)
    assert report.unexpected == [] and report.skipped == {}


def test_shape_mismatches_are_skipped_and_listed(tmp_path):
    _, path = _single_frame_checkpoint(tmp_path)  # d_model 32
    torch.manual_seed(3)
    model = build_model(tiny_config(model__roi_heads__name="single_frame", model__roi_heads__d_model=64,
                                    model__backbone__norm="bn", model__backbone__freeze_at=0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_initial_weights(model, path)
    assert any(k.startswith("roi_heads.predictor.") for k in report.skipped)
    for key in report.skipped:
        assert torch.equal(model.state_dict()[key], before[key])  # kept as initialised
    assert "backbone.conv1.weight" in report.matched


def test_wrong_or_missing_file_is_a_clear_error(tmp_path):
    model = build_model(tiny_config(model__backbone__norm="bn", model__backbone__freeze_at=0))
    with pytest.raises(FileNotFoundError, match="model.weights"):
        load_initial_weights(model, tmp_path / "nope.pth")
    torch.save({"model": {"unrelated.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no tensor of"):
        load_initial_weights(model, tmp_path / "other.pth")
