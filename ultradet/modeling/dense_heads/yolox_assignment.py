"""SimOTA, YOLOX's label assignment (Ge et al., "YOLOX: Exceeding YOLO Series in 2021", section
2.2 "Advanced label assignment"), on one frame, as the original UltraDet repository does it
(baselines spec 2.3: its ``proposal_generator/yolox.py`` ``get_in_boxes_info``,
``get_assignments``, ``dynamic_k_matching``):

1. candidates: cells inside some GT box or inside some GT's centre region (:func:`candidate_masks`);
2. cost of each (GT, candidate) pair (:func:`simota_cost`);
3. each GT takes its ``k`` cheapest candidates, ``k`` from its IoUs, and a cell claimed by
   several GTs keeps one (:func:`dynamic_k_matching`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

# Cost added to a pair whose cell is not both inside the GT box and in its centre region: such a
# pair is taken only when a GT has too few pairs without it (the original's 100000).
OUTSIDE_COST = 1e5
# The original's guard in -log(IoU + eps): a non-overlapping prediction costs 3 * 18.4, not inf.
IOU_COST_EPS = 1e-8


def candidate_masks(
    centres: torch.Tensor, gt_boxes: torch.Tensor, image_size: tuple[int, int], radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """SimOTA's spatial prior (baselines spec 2.3): cell centre ``(x, y)`` is *in box* for GT
    ``i`` if it lies strictly inside the box, *in centre* if ``|x - cx_i| < radius`` and
    ``|y - cy_i| < radius`` with the GT centre ``(cx_i, cy_i)`` clipped to the image.

    Args:
        centres: ``FloatTensor[N, 2]``, (x, y) pixels of the cell centres, ``(g + 0.5) * stride``.
        gt_boxes: ``FloatTensor[K, 4]``, XYXY pixels.
        image_size: ``(H, W)`` of the input image, pixels.
        radius: ``center_radius * stride``, pixels.

    Returns:
        ``(candidates, in_box_and_centre)``: ``BoolTensor[N]``, the cells in box or in centre for
        at least one GT; ``BoolTensor[K, N]``, in box and in centre for that GT.
    """
    x, y = centres[None, :, 0], centres[None, :, 1]
    x1, y1, x2, y2 = (gt_boxes[:, i, None] for i in range(4))
    in_box = (x > x1) & (x < x2) & (y > y1) & (y < y2)
    height, width = image_size
    cx = ((x1 + x2) / 2).clamp(0, width)
    cy = ((y1 + y2) / 2).clamp(0, height)
    in_centre = ((x - cx).abs() < radius) & ((y - cy).abs() < radius)
    return (in_box | in_centre).any(dim=0), in_box & in_centre


def simota_cost(
    cls_logits: torch.Tensor,
    obj_logits: torch.Tensor,
    iou: torch.Tensor,
    in_box_and_centre: torch.Tensor,
    iou_weight: float,
) -> torch.Tensor:
    """SimOTA's cost of assigning each of M cells to each of K GTs (baselines spec 2.3):
    ``BCE(sqrt(sigmoid(cls) * sigmoid(obj)), 1) + iou_weight * -log(IoU + 1e-8)
    + 1e5 * [not in box and centre]``. The BCE is torch's, whose log is clamped at -100; single
    class, so it is the same for every GT. Computed in float32 (also under AMP).

    Args:
        cls_logits, obj_logits: ``FloatTensor[M]``, class and objectness logits of the cells.
        iou: ``FloatTensor[K, M]``, IoU of each GT with each cell's predicted box.
        in_box_and_centre: ``BoolTensor[K, M]`` (:func:`candidate_masks`).
        iou_weight: ``simota_iou_weight`` (3).

    Returns:
        ``FloatTensor[K, M]``.
    """
    joint = (cls_logits.float().sigmoid() * obj_logits.float().sigmoid()).sqrt()
    cls_cost = F.binary_cross_entropy(joint, torch.ones_like(joint), reduction="none")
    iou_cost = -torch.log(iou.float() + IOU_COST_EPS)
    return cls_cost[None] + iou_weight * iou_cost + OUTSIDE_COST * (~in_box_and_centre).float()


def dynamic_k_matching(cost: torch.Tensor, iou: torch.Tensor, topk_iou: int) -> torch.Tensor:
    """SimOTA's dynamic top-k (baselines spec 2.3): GT ``i`` takes its ``k_i = max(1,
    floor(sum of its topk_iou largest IoUs))`` lowest-cost cells; a cell taken by several GTs
    goes to its lowest-cost GT over **all** K GTs, as the original (and YOLOX's own code) does:
    that GT may be one that did not take the cell. Ties in cost go to the lower cell index.

    Args:
        cost: ``FloatTensor[K, M]`` (:func:`simota_cost`). iou: ``FloatTensor[K, M]``.
        topk_iou: ``simota_topk_iou`` (10); ``min(topk_iou, M)`` IoUs are summed.

    Returns:
        ``LongTensor[M]``: the GT index of each cell, -1 for background.
    """
    num_gt, num_cells = cost.shape
    if num_gt == 0 or num_cells == 0:
        return torch.full((num_cells,), -1, dtype=torch.long, device=cost.device)
    top_iou = iou.topk(min(topk_iou, num_cells), dim=1).values
    # The original truncates the (non-negative) float32 sum with int(), i.e. floors it.
    ks = top_iou.sum(dim=1).int().clamp(min=1)
    order = cost.argsort(dim=1, stable=True)
    in_topk = torch.arange(num_cells, device=cost.device)[None] < ks[:, None]
    matching = torch.zeros_like(cost, dtype=torch.bool).scatter_(1, order, in_topk)
    shared = (matching.sum(dim=0) > 1).nonzero().squeeze(1)
    matching[:, shared] = False
    matching[cost[:, shared].argmin(dim=0), shared] = True
    return torch.where(matching.any(dim=0), matching.int().argmax(dim=0), -1)


@torch.no_grad()
def simota_assign(
    centres: torch.Tensor,
    cls_logits: torch.Tensor,
    obj_logits: torch.Tensor,
    pred_boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    image_size: tuple[int, int],
    *,
    radius: float,
    iou_weight: float,
    topk_iou: int,
) -> torch.Tensor:
    """SimOTA on one frame of N cells (baselines spec 2.3): cost and matching over the candidate
    cells only (the others are background); the predictions only rank cells, so nothing here is
    differentiated.

    Args:
        centres: ``FloatTensor[N, 2]``, (x, y) pixels of the cell centres.
        cls_logits, obj_logits: ``FloatTensor[N]``.
        pred_boxes: ``FloatTensor[N, 4]``, the cells' decoded boxes, XYXY pixels.
        gt_boxes: ``FloatTensor[K, 4]``, XYXY pixels (K may be 0).
        image_size: ``(H, W)`` pixels.
        radius: ``center_radius * stride``, pixels. iou_weight, topk_iou: see
            :func:`simota_cost`, :func:`dynamic_k_matching`.

    Returns:
        ``LongTensor[N]``: the GT index of each cell, -1 for background.
    """
    assigned = torch.full((len(centres),), -1, dtype=torch.long, device=centres.device)
    if len(gt_boxes) == 0:
        return assigned
    candidates, in_box_and_centre = candidate_masks(centres, gt_boxes, image_size, radius)
    index = candidates.nonzero().squeeze(1)
    iou = box_iou(gt_boxes.float(), pred_boxes[index].float())
    cost = simota_cost(cls_logits[index], obj_logits[index], iou, in_box_and_centre[:, index], iou_weight)
    assigned[index] = dynamic_k_matching(cost, iou, topk_iou)
    return assigned
