"""Meta-architectures (``META_ARCHITECTURES``, detectron2's ``META_ARCH_REGISTRY``): each builds
and owns its parts from the config and implements the :class:`Detector` contract the engine
relies on. Importing this package registers ``temporal_rcnn``, ``fgfa``, ``one_stage``,
``track_one_stage``, ``detr``, ``deformable_detr``, ``transvod``, ``cva_net`` and ``ptseformer``."""

from ultradet.modeling.meta_arch.base import Detector, VideoDetector
from ultradet.modeling.meta_arch.cva_net import CVANet
from ultradet.modeling.meta_arch.detr import DETR, DeformableDETR
from ultradet.modeling.meta_arch.fgfa import FGFARCNN
from ultradet.modeling.meta_arch.one_stage import OneStageDetector, TrackingOneStageDetector
from ultradet.modeling.meta_arch.ptseformer import PTSEFormer
from ultradet.modeling.meta_arch.temporal_rcnn import TemporalRCNN
from ultradet.modeling.meta_arch.transvod import TransVOD

__all__ = ["Detector", "VideoDetector", "TemporalRCNN", "FGFARCNN", "OneStageDetector", "TrackingOneStageDetector", "DETR", "DeformableDETR", "TransVOD", "CVANet", "PTSEFormer"]
