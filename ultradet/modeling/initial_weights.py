"""Initial weights of a whole detector (detectron2's ``MODEL.WEIGHTS``): start a model from a
checkpoint of another configuration, e.g. the temporal models from a pretrained single-frame
detector, taking every tensor whose name and shape match and keeping the rest as initialised."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_initial_weights` did, by state-dict key.

    Attributes:
        loaded: keys copied from the checkpoint.
        missing: model keys the checkpoint lacks (they keep their initialisation).
        unexpected: checkpoint keys the model lacks (ignored).
        shape_mismatch: keys in both but of different shapes (skipped, kept as initialised).
    """

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    shape_mismatch: tuple[str, ...]

    def summary(self) -> str:
        parts = [f"{len(self.loaded)} tensors loaded"]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("shape mismatch", self.shape_mismatch)):
            if keys:
                shown = ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")
                parts.append(f"{name}: {shown}")
        return "; ".join(parts)


def load_initial_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Copy the tensors of the checkpoint at ``path`` into ``model`` where name and shape match.

    Args:
        model: the detector (or any module).
        path: a trainer checkpoint or ``model_final.pth`` (``{"model": state_dict, ...}``) or a
            bare state dict.

    Returns:
        The :class:`LoadReport` (also logged).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file holds no state dict, or no tensor of it fits ``model`` (the wrong file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"initial weights not found: {path} (model.weights)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (or a checkpoint with a 'model' state dict)")
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    report = LoadReport(
        loaded=tuple(fits),
        missing=tuple(k for k in own if k not in state),
        unexpected=tuple(k for k in state if k not in own),
        shape_mismatch=tuple(k for k in state if k in own and own[k].shape != state[k].shape),
    )
    if not fits:
        raise ValueError(f"{path}: no tensor fits this model ({report.summary()})")
    model.load_state_dict(fits, strict=False)
    logger.info("initial weights %s: %s", path, report.summary())
    return report
