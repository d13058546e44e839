"""Backbone, proposal generators, RoI heads, dense heads, trackers and the meta-architectures
(torch only).

Importing this package registers every component (``META_ARCHITECTURES``,
``PROPOSAL_GENERATORS``, ``ROI_HEADS``, ``DENSE_HEADS``, ``FLOW_ESTIMATORS``), so
``build_model`` finds them by their config names.
"""

from ultradet.modeling import dense_heads, meta_arch, proposal_generator, roi_heads  # noqa: F401  (registration)
from ultradet.modeling.build import build_model
from ultradet.modeling.meta_arch import Detector, OneStageDetector, TemporalRCNN, VideoDetector

__all__ = ["Detector", "OneStageDetector", "TemporalRCNN", "VideoDetector", "build_model"]
