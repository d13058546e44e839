"""One reader for every weights file: the wrappers it unwraps, and the same error from every
loader for a file that does not load."""

from __future__ import annotations

import pytest
import torch

from ultradet.engine.checkpoint import load_checkpoint
from ultradet.modeling.initial_weights import load_initial_weights
from ultradet.modeling.layers.flow import FlowNetS
from ultradet.modeling.pretrained import read_pretrained
from ultradet.modeling.weights_file import CheckpointError, read_state_dict

STATE = {"a.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.zeros(2)}


@pytest.mark.parametrize("saved", [
    STATE,
    {"model": STATE, "iteration": 7},                  # model_final.pth, detectron2
    {"state_dict": STATE, "epoch": 3},                 # Lightning, flownet2-pytorch
    {"model": {"state_dict": STATE}},                  # both, in that order
])
def test_state_dict_is_found_bare_or_wrapped(tmp_path, saved):
    torch.save(saved, tmp_path / "w.pth")
    state = read_state_dict(tmp_path / "w.pth", key="model.weights")
    assert state.keys() == STATE.keys() and all(torch.equal(state[k], STATE[k]) for k in STATE)


def test_file_without_a_state_dict_names_the_key(tmp_path):
    torch.save({"model": {"a": 1}}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=r"^model.weights: .*w.pth holds no state dict of tensors"):
        read_state_dict(tmp_path / "w.pth", key="model.weights")
    with pytest.raises(FileNotFoundError, match=r"^model.weights: .*absent.pth not found"):
        read_state_dict(tmp_path / "absent.pth", key="model.weights")


@pytest.mark.parametrize("load", [
    lambda path: load_checkpoint(path),
    lambda path: load_initial_weights(torch.nn.Linear(3, 2), path),
    lambda path: read_pretrained(str(path)),
    lambda path: FlowNetS(width=4, weights=str(path)),
], ids=["trainer checkpoint", "model.weights", "model.backbone.weights", "model.flow.weights"])
def test_every_loader_refuses_a_truncated_file_naming_it(tmp_path, load):
    path = tmp_path / "w.pth"
    torch.save({"model": STATE}, path)
    path.write_bytes(path.read_bytes()[:40])  # a bad copy
    with pytest.raises(CheckpointError, match=rf"^{path}: unreadable checkpoint, truncated or corrupt"):
        load(path)
