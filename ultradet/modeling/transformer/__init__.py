"""Transformers of the set-prediction detectors: DETR's (``plain``) and Deformable DETR's
(``deformable``), their sine position code and shared layers, and PTSEFormer's per-pixel
progressive blocks (``progressive``)."""

from ultradet.modeling.transformer.deformable import DeformableTransformer, EncodedMaps, refine_boxes
from ultradet.modeling.transformer.plain import DETRTransformer
from ultradet.modeling.transformer.position import sine_position_encoding

__all__ = ["DeformableTransformer", "DETRTransformer", "EncodedMaps", "refine_boxes", "sine_position_encoding"]
