"""Set prediction (DETR family): Hungarian matching of decoder queries to the ground truth and
the training criterion (DETR, Deformable DETR, AlignDETR's objective). Boxes here are normalised
(cx, cy, w, h) in [0, 1], as the decoders predict them."""

from ultradet.modeling.set_prediction.criterion import SetCriterion
from ultradet.modeling.set_prediction.matcher import hungarian_match, match_cost

__all__ = ["SetCriterion", "hungarian_match", "match_cost"]
