"""Transformers of the set-prediction detectors: DETR's (``plain``) and Deformable DETR's
(``deformable``), their sine position code and shared layers; TransVOD's temporal query encoder
(``temporal_query``) and PTSEFormer's per-pixel progressive blocks (``progressive``)."""

from ultradet.modeling.transformer.deformable import DeformableTransformer, EncodedMaps, refine_boxes
from ultradet.modeling.transformer.plain import DETRTransformer
from ultradet.modeling.transformer.position import sine_position_encoding
from ultradet.modeling.transformer.temporal_query import TemporalQueryEncoder

__all__ = ["DeformableTransformer", "DETRTransformer", "EncodedMaps", "refine_boxes", "sine_position_encoding", "TemporalQueryEncoder"]
