"""Initial weights of a whole detector (detectron2's ``MODEL.WEIGHTS``): start a model from a
checkpoint of another configuration, e.g. the temporal models from a pretrained single-frame
detector, taking every tensor whose name and shape match and keeping the rest as initialised."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from ultradet.modeling.pretrained import LoadReport
from ultradet.modeling.weights_file import read_state_dict

logger = logging.getLogger(__name__)


def load_initial_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Copy the tensors of the checkpoint at ``path`` into ``model`` where name and shape match.

    Args:
        model: the detector (or any module).
        path: ``model_final.pth`` (``{"model": state_dict, ...}``) or any weights file
            :func:`~ultradet.modeling.weights_file.read_state_dict` reads.

    Returns:
        The :class:`LoadReport` (also logged): ``missing`` are model keys the checkpoint lacks
        (e.g. a temporal head's layers), kept as initialised like the ``skipped`` shape mismatches.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: (a ``ValueError``) the file does not load or holds no state dict
            (:func:`~ultradet.modeling.weights_file.read_state_dict`).
        ValueError: no tensor of it fits ``model`` (the wrong file).
    """
    state = read_state_dict(path, key="model.weights")
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    report = LoadReport(
        source=str(path),
        matched=list(fits),
        missing=[k for k in own if k not in state],
        unexpected=[k for k in state if k not in own],
        skipped={k: (tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and k not in fits},
    )
    if not fits:
        raise ValueError(f"model.weights: no tensor of {path} fits this model\n{report.summary()}")
    model.load_state_dict(fits, strict=False)
    logger.info(report.summary())
    return report
