"""From dense per-location predictions of one frame to a few proposals: top-k, clip, NMS, top-k
(detectron2's ``find_top_rpn_proposals``, single level; DeFCN's inference, Wang et al. 2021)."""

from __future__ import annotations

import torch
from torchvision.ops import clip_boxes_to_image, nms


def select_proposals(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_size: tuple[int, int],
    *,
    pre_nms_topk: int,
    nms_thresh: float,
    post_nms_topk: int,
) -> dict[str, torch.Tensor]:
    """Keep the ``pre_nms_topk`` best-scored boxes, clip them to the image, drop empty and
    non-finite ones, NMS at ``nms_thresh``, keep the ``post_nms_topk`` best.

    Args:
        boxes: ``FloatTensor[N, 4]``, XYXY input-image pixels.
        scores: ``FloatTensor[N]``, objectness probability in [0, 1].
        image_size: ``(H, W)`` of the input image.

    Returns:
        ``{"boxes": FloatTensor[P, 4], "scores": FloatTensor[P]}``, ``P <= post_nms_topk``,
        detached (proposals are inputs of the RoI head, not a path for its gradients), sorted by
        decreasing score, boxes inside ``[0, W] x [0, H]`` with positive width and height.
    """
    boxes, scores = boxes.detach(), scores.detach()
    scores, order = scores.topk(min(pre_nms_topk, len(scores)))
    boxes = clip_boxes_to_image(boxes[order], image_size)
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
    valid &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores = boxes[valid], scores[valid]
    keep = nms(boxes, scores, nms_thresh)[:post_nms_topk]
    return {"boxes": boxes[keep], "scores": scores[keep]}


def clip_nonempty(boxes: torch.Tensor, scores: torch.Tensor, image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """A dense head's final detections: ``boxes`` ``FloatTensor[N, 4]`` (XYXY input pixels)
    clipped to the ``(H, W)`` image, those left with zero width or height dropped (the last step
    of detectron2's RetinaNet and FCOS inference, after NMS).

    Returns:
        ``{"boxes": FloatTensor[P, 4], "scores": FloatTensor[P]}``, ``P <= N``, in input order.
    """
    boxes = clip_boxes_to_image(boxes, image_size)
    nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return {"boxes": boxes[nonempty], "scores": scores[nonempty]}
