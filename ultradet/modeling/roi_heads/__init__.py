"""RoI heads. Importing this package registers every head in ``ROI_HEADS``
(``single_frame``, ``frame_relation``, ``relation``, ``selsa``, ``mega``, ``ntca``)."""

from ultradet.config import ExperimentConfig
from ultradet.modeling.registry import ROI_HEADS
from ultradet.modeling.roi_heads.base import Res5ROIHeads
from ultradet.modeling.roi_heads.frame_relation import FrameRelationROIHeads
from ultradet.modeling.roi_heads.mega import MEGAROIHeads
from ultradet.modeling.roi_heads.ntca import NTCAROIHeads
from ultradet.modeling.roi_heads.relation import RelationROIHeads
from ultradet.modeling.roi_heads.selsa import SELSAROIHeads
from ultradet.modeling.roi_heads.single_frame import SingleFrameROIHeads

__all__ = [
    "Res5ROIHeads",
    "SingleFrameROIHeads",
    "FrameRelationROIHeads",
    "RelationROIHeads",
    "SELSAROIHeads",
    "MEGAROIHeads",
    "NTCAROIHeads",
    "build_roi_heads",
]


def build_roi_heads(cfg: ExperimentConfig, *, in_channels: int, stride: int) -> Res5ROIHeads:
    """The head named by ``cfg.model.roi_heads.name`` over a backbone map of ``in_channels``
    channels and ``stride`` pixels, built with its ``from_config``."""
    return ROI_HEADS.get(cfg.model.roi_heads.name).from_config(cfg, in_channels=in_channels, stride=stride)
