"""Backbone, proposal generators, RoI heads and the meta-architecture (torch only).

Importing this package registers every component (``PROPOSAL_GENERATORS``, ``ROI_HEADS``,
``FLOW_ESTIMATORS``), so ``build_model`` finds them by their config names.
"""

from ultradet.modeling import proposal_generator, roi_heads  # noqa: F401  (registration)
from ultradet.modeling.build import build_model
from ultradet.modeling.meta_arch import TemporalRCNN

__all__ = ["TemporalRCNN", "build_model"]
