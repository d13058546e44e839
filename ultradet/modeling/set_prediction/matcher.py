"""Bipartite matching of set-prediction detectors on one image: the matching cost of DETR
(Carion et al., ECCV 2020, section 3.1, eq. 1) and Deformable DETR (Zhu et al., ICLR 2021,
its focal-loss class cost; baselines spec 3.1), and the Hungarian assignment, one-to-one or
AlignDETR's many-to-one (Cai et al., 2023, "mixed matching"; seed spec 2)."""

from __future__ import annotations

from typing import Literal

import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert, generalized_box_iou


def match_cost(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_boxes: torch.Tensor,
    *,
    class_cost: Literal["focal", "softmax"],
    weights: tuple[float, float, float] = (2.0, 5.0, 2.0),
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> torch.Tensor:
    """The cost of assigning each query to each ground-truth box (no gradient):
    ``w_class * class cost + w_l1 * L1 - w_giou * GIoU`` (DETR eq. 1 with its box loss
    terms; baselines spec 3.1, seed spec 1).

    * class cost ``"focal"`` (Deformable DETR; baselines spec 3.1): with ``p = sigmoid(logit)`` of
      the GT's class, ``alpha * (1 - p)^gamma * -log(p + 1e-8) - (1 - alpha) * p^gamma *
      -log(1 - p + 1e-8)``, the focal loss of calling the query positive minus that of calling it
      negative.
    * class cost ``"softmax"`` (DETR): ``-softmax(logits)`` at the GT's class; the last logit is
      "no object".
    * L1: the L1 distance of the normalised (cx, cy, w, h) boxes; GIoU: of the same boxes as XYXY.

    Args:
        logits: ``FloatTensor[Q, K]``; ``K = num_classes`` for ``"focal"``, ``num_classes + 1``
            for ``"softmax"``.
        boxes: ``FloatTensor[Q, 4]``, predicted (cx, cy, w, h) normalised by the image size.
        gt_labels: ``LongTensor[G]`` in ``[0, num_classes)``.
        gt_boxes: ``FloatTensor[G, 4]``, (cx, cy, w, h) normalised.
        class_cost: ``"focal"`` or ``"softmax"``.
        weights: ``(w_class, w_l1, w_giou)`` (Deformable DETR's 2, 5, 2; DETR's 1, 5, 2).
        focal_alpha, focal_gamma: of the focal class cost.

    Returns:
        ``FloatTensor[Q, G]`` (float32; ``[Q, 0]`` when ``G = 0``).

    Raises:
        ValueError: an unknown ``class_cost``, shapes that do not fit, or a label outside the
            classes.
    """
    _check_match_inputs(logits, boxes, gt_labels, gt_boxes, class_cost)
    w_class, w_l1, w_giou = weights
    with torch.no_grad():
        logits, boxes, gt_boxes = logits.float(), boxes.float(), gt_boxes.float()
        if len(gt_labels) == 0:
            return logits.new_zeros((len(logits), 0))
        if class_cost == "focal":
            prob = logits.sigmoid()[:, gt_labels]
            positive = focal_alpha * (1 - prob).pow(focal_gamma) * -(prob + 1e-8).log()
            negative = (1 - focal_alpha) * prob.pow(focal_gamma) * -(1 - prob + 1e-8).log()
            cost_class = positive - negative
        else:
            cost_class = -logits.softmax(dim=-1)[:, gt_labels]
        cost_l1 = torch.cdist(boxes, gt_boxes, p=1)
        giou = generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"), box_convert(gt_boxes, "cxcywh", "xyxy"))
        return w_class * cost_class + w_l1 * cost_l1 - w_giou * giou


def _check_match_inputs(
    logits: torch.Tensor, boxes: torch.Tensor, gt_labels: torch.Tensor, gt_boxes: torch.Tensor, class_cost: str
) -> None:
    if class_cost not in ("focal", "softmax"):
        raise ValueError(f"class_cost must be 'focal' or 'softmax', got {class_cost!r}")
    if logits.dim() != 2 or boxes.shape != (len(logits), 4):
        raise ValueError(
            "expected logits FloatTensor[Q, K] and boxes FloatTensor[Q, 4], "
            f"got {tuple(logits.shape)} and {tuple(boxes.shape)}"
        )
    if gt_labels.dim() != 1 or gt_boxes.shape != (len(gt_labels), 4):
        raise ValueError(
            "expected gt_labels LongTensor[G] and gt_boxes FloatTensor[G, 4], "
            f"got {tuple(gt_labels.shape)} and {tuple(gt_boxes.shape)}"
        )
    num_classes = logits.shape[1] - (1 if class_cost == "softmax" else 0)
    if len(gt_labels) and (int(gt_labels.min()) < 0 or int(gt_labels.max()) >= num_classes):
        raise ValueError(f"gt_labels must lie in [0, {num_classes}), got {gt_labels.tolist()}")


def hungarian_match(cost: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The assignment of queries to ground-truth boxes of least total cost
    (``scipy.optimize.linear_sum_assignment``).

    ``k = 1``: one-to-one (DETR section 3.1): ``min(Q, G)`` pairs, each query and each GT at
    most once. ``k > 1``: AlignDETR's many-to-one matching (seed spec 2): every GT column is
    repeated k times and one assignment is solved, so each GT gets up to k distinct queries and
    each query at most one GT. k is capped at ``max(1, Q // (2 * G))``, so that the matched
    queries ``k * G`` stay within half of the ``Q`` queries (the spec's "about half": the rest
    must still learn "no object"); e.g. 16 queries and 4 GTs allow k = 2, 5 GTs only k = 1.

    Args:
        cost: ``FloatTensor[Q, G]`` (:func:`match_cost`); ``G = 0`` gives no pairs.
        k: queries per GT, >= 1.

    Returns:
        ``(query_index, gt_index)``: two ``LongTensor[M]`` on the device of ``cost``, sorted by
        query index; ``M = min(Q, G)`` for k = 1, ``k' * G`` for the capped ``k' > 1``.

    Raises:
        ValueError: ``cost`` is not 2-D or holds NaN or Inf, or ``k < 1``.
    """
    if cost.dim() != 2:
        raise ValueError(f"expected a cost matrix FloatTensor[Q, G], got shape {tuple(cost.shape)}")
    if k < 1:
        raise ValueError(f"k (queries per ground-truth box) must be >= 1, got {k}")
    num_queries, num_gt = cost.shape
    empty = torch.zeros(0, dtype=torch.long, device=cost.device)
    if num_gt == 0 or num_queries == 0:
        return empty, empty
    if torch.isnan(cost).any():
        raise ValueError("the matching cost matrix holds NaN (degenerate boxes or diverged predictions?)")
    if torch.isinf(cost).any():
        raise ValueError("the matching cost matrix holds Inf (degenerate boxes or diverged predictions?)")
    k = min(k, max(1, num_queries // (2 * num_gt)))
    repeated = cost.detach().double().cpu().repeat(1, k)  # column j is GT j % G
    rows, cols = linear_sum_assignment(repeated.numpy())
    query_index = torch.as_tensor(rows, dtype=torch.long)
    gt_index = torch.as_tensor(cols, dtype=torch.long) % num_gt
    order = query_index.argsort()
    return query_index[order].to(cost.device), gt_index[order].to(cost.device)
