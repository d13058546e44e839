"""Where a ground-truth box may lie: one rule for every reader of annotations.

A COCO box ``[x, y, w, h]`` (absolute pixels) of a ``width x height`` frame must have a positive
size and lie inside the frame, give or take :data:`BOX_TOLERANCE_PX` (spec section 1; the
CVA-Net errata, spec section 7). The prepare stage (:mod:`ultradet.data.validate`) refuses a
dataset that breaks it, and the evaluation (:mod:`ultradet.evaluation.inputs`) a ground truth
that does, so a box the pipeline would never train on is never scored either.

The predicates work on Python numbers and on numpy arrays alike (element-wise). Like
:mod:`ultradet.errors` this module imports nothing, so every layer may use it (the evaluation
needs only numpy).
"""

from __future__ import annotations

# Annotation tools round coordinates: a box may poke out of the frame by this much (pixels).
BOX_TOLERANCE_PX = 0.5


def non_positive_size(w, h):
    """True where a box's width ``w`` or height ``h`` (pixels) is not positive."""
    return (w <= 0) | (h <= 0)


def outside_frame(x, y, w, h, width, height):
    """True where the box ``[x, y, w, h]`` pokes out of its ``width x height`` frame by more
    than :data:`BOX_TOLERANCE_PX` on any side (all in pixels)."""
    tol = BOX_TOLERANCE_PX
    return (x < -tol) | (y < -tol) | (x + w > width + tol) | (y + h > height + tol)


def box_problem(bbox, width, height) -> str | None:
    """What is wrong with the COCO box ``bbox`` (``[x, y, w, h]``, 4 numbers) of a
    ``width x height`` frame, as a phrase for an error message (``"box [..] has non-positive
    size"``, ``"box [..] (xywh) lies outside the 64x64 frame"``); None when it obeys the rule."""
    x, y, w, h = bbox
    if non_positive_size(w, h):
        return f"box {bbox} has non-positive size"
    if outside_frame(x, y, w, h, width, height):
        return f"box {bbox} (xywh) lies outside the {width}x{height} frame"
    return None
