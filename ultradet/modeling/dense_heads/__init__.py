"""Dense heads of the one-stage detectors (``DENSE_HEADS``): per-location classification and box
regression on the single res4 map, with their own assignment, losses and test-time selection.
Importing this package registers ``poto`` (DeFCN; the same module is the POTO proposal
generator of the two-stage models), ``retinanet``, ``fcos`` and ``yolox``.

Contract (``docs/architecture.md``), as a proposal generator's:
``head(features: FloatTensor[T, C, h, w], image_size: (H, W), targets: list[dict] | None = None)
-> (detections, losses)``; ``detections`` is a list of T dicts ``{"boxes": FloatTensor[N, 4]
(XYXY input-image pixels), "scores": FloatTensor[N] (probability)}``, ``losses`` a dict of named
scalars (training only; ``targets`` one ``{"boxes", "labels"}`` dict per frame).
"""

from torch import nn

from ultradet.config import ExperimentConfig
from ultradet.modeling.dense_heads.fcos import FCOSHead
from ultradet.modeling.dense_heads.retinanet import RetinaNetHead
from ultradet.modeling.dense_heads.yolox import YOLOXHead
from ultradet.modeling.proposal_generator.poto import POTO
from ultradet.modeling.registry import DENSE_HEADS

DENSE_HEADS.register("poto")(POTO)

__all__ = ["FCOSHead", "RetinaNetHead", "YOLOXHead", "build_dense_head"]


def build_dense_head(cfg: ExperimentConfig, *, in_channels: int, stride: int) -> nn.Module:
    """The head named by ``cfg.model.dense_head.name`` over a feature map of ``in_channels``
    channels and ``stride`` pixels, built with its ``from_config``.

    Raises:
        KeyError: an unregistered name (the message lists the registered ones).
    """
    return DENSE_HEADS.get(cfg.model.dense_head.name).from_config(cfg, in_channels=in_channels, stride=stride)
