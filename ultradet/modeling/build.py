"""``build_model``: an :class:`ExperimentConfig` -> the detector it describes."""

from __future__ import annotations

from ultradet.config import ExperimentConfig
from ultradet.modeling.initial_weights import load_initial_weights
from ultradet.modeling.meta_arch import VideoDetector
from ultradet.modeling.pretrained import load_pretrained
from ultradet.modeling.registry import META_ARCHITECTURES


def build_model(cfg: ExperimentConfig, *, initial_weights: bool = True) -> VideoDetector:
    """The meta-architecture named by ``cfg.model.meta_architecture`` (``META_ARCHITECTURES``),
    which builds its own parts from the config, on the CPU, in training mode (the caller moves
    it to its device). Weights are random unless ``cfg.model.backbone.weights`` names pretrained
    ResNet weights (torchvision name, local state dict or detectron2 ``.pkl``;
    :func:`~ultradet.modeling.pretrained.load_pretrained`) and/or ``cfg.model.weights`` a
    checkpoint of a whole detector, loaded after them
    (:func:`~ultradet.modeling.initial_weights.load_initial_weights`).

    ``initial_weights=False`` skips both: for a model whose every tensor is about to be
    replaced by a trained state dict, which then needs neither the pretraining files nor a
    download.

    Raises:
        KeyError: an unregistered meta-architecture, proposal generator, RoI head or dense head name.
        PretrainedWeightsError / FileNotFoundError / ValueError: the weights cannot be read or
            fetched, or do not fit (the message names the file, or the cache path of a torchvision name).
        ValueError: a component rejects its settings.
    """
    model = META_ARCHITECTURES.get(cfg.model.meta_architecture).from_config(cfg)
    if not initial_weights:
        return model
    if cfg.model.backbone.weights is not None:
        load_pretrained(model, cfg.model.backbone.weights)
    if cfg.model.weights is not None:
        load_initial_weights(model, cfg.model.weights)
    return model
