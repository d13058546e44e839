"""``build_model``: an :class:`ExperimentConfig` -> the detector it describes."""

from __future__ import annotations

from ultradet.config import ExperimentConfig
from ultradet.modeling.backbone import build_backbone
from ultradet.modeling.initial_weights import load_initial_weights
from ultradet.modeling.fgfa import FGFARCNN
from ultradet.modeling.meta_arch import TemporalRCNN
from ultradet.modeling.one_stage import ProposalDetections
from ultradet.modeling.pretrained import load_pretrained
from ultradet.modeling.proposal_generator import build_proposal_generator
from ultradet.modeling.roi_heads import build_roi_heads


def build_model(cfg: ExperimentConfig) -> TemporalRCNN:
    """Backbone, proposal generator and RoI head named by ``cfg.model``, on the CPU, in training
    mode (the caller moves it to its device). Weights are random unless
    ``cfg.model.backbone.weights`` names pretrained ResNet weights (torchvision name, local
    state dict or detectron2 ``.pkl``; :func:`~ultradet.modeling.pretrained.load_pretrained`)
    and/or ``cfg.model.weights`` a checkpoint of a whole detector, loaded after them
    (:func:`~ultradet.modeling.initial_weights.load_initial_weights`). With
    ``meta_architecture: proposal_network`` the proposals are the detections (one-stage;
    ``roi_heads`` is unused); with ``fgfa`` the proposal generator and RoI head see FGFA-aggregated
    maps (:class:`FGFARCNN`).

    Raises:
        KeyError: an unregistered proposal generator or RoI head name.
        PretrainedWeightsError / FileNotFoundError / ValueError: the weights cannot be read or
            fetched, or do not fit (the message names the file, or the cache path of a torchvision name).
        ValueError: a component rejects its settings (e.g. lookahead on a causal-only model).
    """
    backbone = build_backbone(cfg)
    meta = cfg.model.meta_architecture
    shape = dict(in_channels=backbone.out_channels, stride=backbone.stride)
    parts = dict(
        backbone=backbone,
        proposal_generator=build_proposal_generator(cfg, **shape),
        roi_heads=ProposalDetections() if meta == "proposal_network" else build_roi_heads(cfg, **shape),
        pixel_mean=cfg.model.pixel_mean,
        pixel_std=cfg.model.pixel_std,
    )
    if meta == "fgfa":
        model = FGFARCNN(**parts, feature_channels=backbone.out_channels, **FGFARCNN.config_kwargs(cfg))
    else:
        model = TemporalRCNN(**parts)
    if cfg.model.backbone.weights is not None:
        load_pretrained(model, cfg.model.backbone.weights)
    if cfg.model.weights is not None:
        load_initial_weights(model, cfg.model.weights)
    return model
