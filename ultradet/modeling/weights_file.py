"""Reading a torch weights file: one loader for every reader of a ``.pth`` (trainer checkpoints
and ``model_final.pth``, ``model.weights``, ``model.backbone.weights``, ``model.flow.weights``),
so that each refuses a missing, truncated or foreign file with the same clear error."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ultradet.errors import UserError

# What torch.load raises on a truncated or corrupt file (an empty file: EOFError; cut inside the
# zip archive: OSError or RuntimeError from its reader; not a torch file: UnpicklingError).
_UNREADABLE = (RuntimeError, EOFError, OSError, pickle.UnpicklingError)
# Where checkpoints keep the state dict: ours and detectron2's under "model", Lightning's and
# flownet2-pytorch's under "state_dict"; unwrapped in this order.
STATE_DICT_KEYS = ("model", "state_dict")


class CheckpointError(UserError, ValueError):
    """A weights or checkpoint file cannot be used (truncated by a full disk or a bad copy,
    corrupt, or holding no state dict); the message names the file."""


def load_file(path: str | Path, *, map_location: str | torch.device = "cpu", weights_only: bool = True):
    """``torch.load`` of ``path``, with one error for a file that does not load.

    Args:
        weights_only: torch's safe unpickler (tensors and plain containers only); trainer
            checkpoints, which carry numpy RNG states, need False.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file does not load (truncated, corrupt, not a torch file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except _UNREADABLE as exc:
        # torch's own message goes on for lines; its first sentence says what failed
        reason = str(exc).split(". ")[0].rstrip(".")
        raise CheckpointError(f"{path}: unreadable checkpoint, truncated or corrupt ({type(exc).__name__}: {reason})") from exc


def read_state_dict(path: str | Path, *, key: str) -> dict[str, torch.Tensor]:
    """The state dict (name -> tensor, on the CPU) in the weights file ``path``: a bare state
    dict, or one under ``"model"`` and/or ``"state_dict"`` (:data:`STATE_DICT_KEYS`).

    Args:
        key: the config key that named the file (``"model.weights"``), for the messages.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names ``key``).
        CheckpointError: the file does not load, or holds no state dict of tensors.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{key}: {path} not found")
    state = load_file(path)
    for wrapper in STATE_DICT_KEYS:
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{key}: {path} holds no state dict of tensors (bare, or under {' / '.join(map(repr, STATE_DICT_KEYS))}), "
            f"got {type(state).__name__}"
        )
    return state
