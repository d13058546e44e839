"""Fast R-CNN box predictor, its losses and its inference post-processing (spec section 3.4).

Single foreground class: class index ``0`` is the lesion, index ``1`` is background (detectron2's
convention: background is the last of ``num_classes + 1`` logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms, clip_boxes_to_image

LESION = 0
BACKGROUND = 1


class FastRCNNPredictor(nn.Module):
    """Linear classifier (lesion, background) and class-specific box-delta regressor.

    Init as in detectron2's ``FastRCNNOutputLayers``: weights ~ N(0, 0.01) for the classifier,
    N(0, 0.001) for the regressor, zero biases.
    """

    def __init__(self, *, d_model: int = 256):
        super().__init__()
        self.cls_score = nn.Linear(d_model, 2)
        self.bbox_pred = nn.Linear(d_model, 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: ``FloatTensor[R, d_model]`` -> (logits ``[R, 2]``, deltas ``[R, 4]``, encoded
        with the head's ``BoxCoder`` weights)."""
        return self.cls_score(x), self.bbox_pred(x)


def fast_rcnn_losses(
    logits: torch.Tensor, deltas: torch.Tensor, labels: torch.Tensor, regression_targets: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Softmax cross-entropy (mean over RoIs) + L1 on foreground deltas summed and divided by the
    number of sampled RoIs (detectron2's smooth-L1 with beta=0).

    Args:
        logits: ``FloatTensor[R, 2]``; deltas: ``FloatTensor[R, 4]``.
        labels: ``LongTensor[R]``, ``LESION`` or ``BACKGROUND``.
        regression_targets: ``FloatTensor[R, 4]`` (only foreground rows are used).

    Returns:
        ``{"loss_cls", "loss_box_reg"}`` scalars; both are 0 (and keep the graph) when ``R == 0``.
    """
    if labels.numel() == 0:
        zero = logits.sum() + deltas.sum()
        return {"loss_cls": zero, "loss_box_reg": zero.clone()}
    foreground = labels == LESION
    box_error = (deltas[foreground] - regression_targets[foreground]).abs().sum()
    return {
        "loss_cls": F.cross_entropy(logits, labels),
        "loss_box_reg": box_error / labels.numel(),
    }


def fast_rcnn_inference(
    logits: torch.Tensor,
    deltas: torch.Tensor,
    proposals: torch.Tensor,
    image_size: tuple[int, int],
    *,
    box_coder: BoxCoder,
    score_thresh: float,
    nms_thresh: float,
    detections_per_image: int,
) -> dict[str, torch.Tensor]:
    """Detections of one frame.

    Score = softmax P(lesion); keep ``score > score_thresh`` (strict), NMS at ``nms_thresh``, best
    ``detections_per_image``, sorted by decreasing score.

    Args:
        logits: ``FloatTensor[P, 2]``; deltas: ``FloatTensor[P, 4]``.
        proposals: ``FloatTensor[P, 4]``, XYXY pixels of the input image.
        image_size: ``(H, W)`` of the input image; boxes are clipped to it.

    Returns:
        ``{"boxes": FloatTensor[N, 4]`` (XYXY input-image pixels), ``"scores": FloatTensor[N]``,
        ``"labels": LongTensor[N]`` (zeros)``}``.
    """
    scores = F.softmax(logits, dim=-1)[:, LESION]
    boxes = box_coder.decode_single(deltas, proposals.to(deltas.dtype))
    boxes = clip_boxes_to_image(boxes, image_size)
    keep = torch.nonzero(scores > score_thresh).squeeze(1)
    boxes, scores = boxes[keep], scores[keep]
    keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.long), nms_thresh)
    keep = keep[:detections_per_image]
    return {
        "boxes": boxes[keep],
        "scores": scores[keep],
        "labels": torch.full_like(keep, LESION),
    }
