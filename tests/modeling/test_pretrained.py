"""Pretrained ResNet weights: the three forms of ``model.backbone.weights`` load the same tensors,
into the trunk and (where shapes fit) the RoI head's res5; unfetchable names fail with the path."""

from __future__ import annotations

import pickle
import urllib.error

import pytest
import torch
from torchvision.models import resnet18

from modeltoy import SIZE, tiny_config
from ultradet.config import ConfigError, load_config
from ultradet.modeling import build_model
from ultradet.modeling.pretrained import PretrainedWeightsError, detectron2_key_to_torchvision, load_pretrained

PRETRAINED = {"model.backbone.norm": "frozen_bn", "model.backbone.freeze_at": 2}


def _reference() -> torch.nn.Module:
    """A torchvision ResNet-18 with random weights and non-trivial BN statistics."""
    torch.manual_seed(0)
    net = resnet18(weights=None)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.5, 0.5)
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return net


def _as_detectron2(state: dict) -> dict:
    """The detectron2 names of torchvision keys, spelt out independently of the loader's rules
    (detectron2's convert-torchvision-to-d2 naming)."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        parts = key.split(".")
        if parts[0] == "conv1":
            name = "stem.conv1." + parts[1]
        elif parts[0] == "bn1":
            name = "stem.conv1.norm." + parts[1]
        elif parts[0] == "fc":
            name = "fc1000." + parts[1]
        else:
            stage, block, layer = f"res{int(parts[0][-1]) + 1}", parts[1], parts[2]
            if layer == "downsample":
                name = f"{stage}.{block}.shortcut." + ("norm." if parts[3] == "1" else "") + parts[4]
            else:
                name = f"{stage}.{block}.conv{layer[-1]}." + ("norm." if layer.startswith("bn") else "") + parts[3]
        out[name] = value.numpy()
    return out


def test_detectron2_names_hand_mapped():
    assert detectron2_key_to_torchvision("stem.conv1.weight") == "conv1.weight"
    assert detectron2_key_to_torchvision("stem.conv1.norm.running_mean") == "bn1.running_mean"
    assert detectron2_key_to_torchvision("res2.0.conv1.weight") == "layer1.0.conv1.weight"
    assert detectron2_key_to_torchvision("res3.1.conv2.norm.weight") == "layer2.1.bn2.weight"
    assert detectron2_key_to_torchvision("res4.0.shortcut.weight") == "layer3.0.downsample.0.weight"
    assert detectron2_key_to_torchvision("res5.0.shortcut.norm.running_var") == "layer4.0.downsample.1.running_var"
    assert detectron2_key_to_torchvision("fc1000.bias") == "fc.bias"
    assert detectron2_key_to_torchvision("something.else") == "something.else"


def test_torchvision_state_dict_and_detectron2_pkl_load_identical_backbones(tmp_path):
    reference = _reference()
    pth, pkl = tmp_path / "r18.pth", tmp_path / "r18.pkl"
    torch.save(reference.state_dict(), pth)
    with pkl.open("wb") as f:
        pickle.dump({"model": _as_detectron2(reference.state_dict()), "__author__": "test"}, f)
    from_pth = build_model(tiny_config(**{**PRETRAINED, "model.backbone.weights": str(pth)}))
    from_pkl = build_model(tiny_config(**{**PRETRAINED, "model.backbone.weights": str(pkl)}))
    a, b = from_pth.backbone.state_dict(), from_pkl.backbone.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The trunk is torchvision's ResNet cut after layer3, frozen BN included.
    r, x = reference.eval(), torch.randn(1, 3, SIZE, SIZE)
    expected = r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x)))))))
    torch.testing.assert_close(from_pkl.backbone.eval()(x), expected)
    # freeze_at 2: stem and res2 stay frozen after loading.
    assert not from_pkl.backbone.conv1.weight.requires_grad and from_pkl.backbone.layer2[0].conv1.weight.requires_grad


def test_report_lists_matched_missing_unexpected_and_shape_skipped(tmp_path):
    reference = _reference()
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    # d_model 32: ImageNet's 512-channel res5 does not fit the head's res5 (the original's half-channel case).
    model = build_model(tiny_config())
    report = load_pretrained(model, str(path))
    trunk = [k for k in model.state_dict() if k.startswith("backbone.") and not k.endswith("num_batches_tracked")]
    assert sorted(report.matched) == sorted(trunk)
    assert report.unexpected == ["fc.weight", "fc.bias"]
    res5 = "roi_heads.box_encoder.res5."
    assert report.skipped[res5 + "0.conv1.weight"] == ((512, 256, 3, 3), (32, 256, 3, 3))
    assert report.skipped[res5 + "1.bn2.running_var"] == ((512,), (32,))
    # The head's res5 has 3 blocks (spec 3.4); ResNet-18's layer4 has 2.
    assert report.missing and all(k.startswith(res5 + "2.") for k in report.missing)
    # d_model 512: the head's res5 is exactly ImageNet's layer4 and loads.
    wide = build_model(tiny_config(model__roi_heads__d_model=512))
    report = load_pretrained(wide, str(path))
    assert report.skipped == {} and res5 + "1.conv2.weight" in report.matched
    assert torch.equal(wide.roi_heads.box_encoder.res5[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_c4_only_state_dict_loads_and_reports_res5_missing(tmp_path):
    reference = _reference()
    trunk = {k: v for k, v in reference.state_dict().items() if not k.startswith(("layer4.", "fc."))}
    path = tmp_path / "c4.pth"
    torch.save(trunk, path)
    model = build_model(tiny_config())
    report = load_pretrained(model, str(path))
    assert report.unexpected == [] and report.skipped == {}
    assert report.missing and all(k.startswith("roi_heads.box_encoder.res5.") for k in report.missing)
    assert torch.equal(model.backbone.layer3[1].bn2.running_mean, reference.layer3[1].bn2.running_mean)


def test_a_file_that_fits_nothing_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"head.weight": torch.zeros(3)}, path)
    with pytest.raises(PretrainedWeightsError, match="no tensor of .*other.pth fits"):
        build_model(tiny_config(**{**PRETRAINED, "model.backbone.weights": str(path)}))
    with pytest.raises(FileNotFoundError, match="absent.pth not found"):
        build_model(tiny_config(**{**PRETRAINED, "model.backbone.weights": str(tmp_path / "absent.pth")}))


def test_torchvision_name_loads_from_torchvisions_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = _reference()
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    model = build_model(tiny_config(**{**PRETRAINED, "model.backbone.weights": "torchvision:ResNet18_Weights.IMAGENET1K_V1"}))
    assert torch.equal(model.backbone.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


def test_unfetchable_torchvision_name_fails_before_training_naming_the_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    attempts = []

    def offline(url, *args, **kwargs):  # what urllib raises without a network, without trying one
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    cfg = tiny_config(**{**PRETRAINED, "model.backbone.weights": "torchvision:ResNet18_Weights.IMAGENET1K_V1"})
    with pytest.raises(PretrainedWeightsError) as err:
        build_model(cfg)
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in str(err.value) and "https://download.pytorch.org/models/resnet18-f37072fd.pth" in str(err.value)
    assert attempts == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]


@pytest.mark.parametrize("backbone", [{"norm": "frozen_bn"}, {"freeze_at": 2}, {"norm": "frozen_bn", "freeze_at": 2}])
def test_frozen_backbone_without_weights_is_refused(backbone):
    with pytest.raises(ConfigError, match="model.*no weights"):
        load_config(overrides={f"model.backbone.{k}": v for k, v in backbone.items()})
    # a whole-detector checkpoint (model.weights) provides the frozen stages' weights too
    cfg = load_config(overrides={"model.weights": "pretrained.pth", **{f"model.backbone.{k}": v for k, v in backbone.items()}})
    assert cfg.model.weights == "pretrained.pth"


def test_torchvision_name_of_another_depth_is_refused():
    with pytest.raises(ConfigError, match="not ResNet-18 weights"):
        load_config(overrides={"model.backbone.depth": 18, "model.backbone.weights": "torchvision:ResNet34_Weights.IMAGENET1K_V1"})
