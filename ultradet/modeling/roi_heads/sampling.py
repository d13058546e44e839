"""Training RoIs: GT boxes prepended to the proposals, IoU matching and balanced sampling
(spec section 3.4, detectron2 ``PROPOSAL_APPEND_GT`` / ``IOU_THRESHOLDS=[0.5]``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher
from torchvision.ops import box_iou

from ultradet.modeling.roi_heads.fast_rcnn import BACKGROUND, LESION


@dataclass
class SampledRoIs:
    """The sampled RoIs of one frame (``R <= batch_size_per_image``).

    Attributes:
        boxes: ``FloatTensor[R, 4]``, XYXY input-image pixels, detached.
        labels: ``LongTensor[R]``, ``LESION`` (IoU >= fg_iou_thresh with some GT) or ``BACKGROUND``.
        regression_targets: ``FloatTensor[R, 4]``, deltas to the matched GT (zeros for background).
        is_gt: ``BoolTensor[R]``, True for GT boxes appended to the proposals (the relation
            module must not use them as keys: they do not exist at test time).
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    regression_targets: torch.Tensor
    is_gt: torch.Tensor


class RoISampler:
    """Labels and subsamples proposals for the box head, frame by frame.

    Args:
        batch_size_per_image: RoIs sampled per frame (16).
        positive_fraction: at most this fraction of them is foreground (0.5).
        fg_iou_thresh: IoU at or above which a box is foreground (0.5).
        box_coder: encodes regression targets (``BBOX_REG_WEIGHTS``).
    """

    def __init__(
        self, *, batch_size_per_image: int, positive_fraction: float, fg_iou_thresh: float, box_coder: BoxCoder
    ):
        self.matcher = Matcher(fg_iou_thresh, fg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = box_coder

    def __call__(self, proposals: list[dict], targets: list[dict]) -> list[SampledRoIs]:
        """
        Args:
            proposals: per frame ``{"boxes": FloatTensor[P, 4], ...}``, XYXY pixels.
            targets: per frame ``{"boxes": FloatTensor[K, 4], ...}``, XYXY pixels; ``K`` may be 0.

        Returns:
            One :class:`SampledRoIs` per frame. Sampling uses the global torch RNG (deterministic
            under ``torch.manual_seed``).

        Raises:
            ValueError: ``proposals`` and ``targets`` differ in length.
        """
        if len(proposals) != len(targets):
            raise ValueError(f"{len(proposals)} proposal sets for {len(targets)} target sets")
        return [self._sample_frame(p["boxes"], t["boxes"]) for p, t in zip(proposals, targets)]

    def _sample_frame(self, proposals: torch.Tensor, gt: torch.Tensor) -> SampledRoIs:
        proposals = proposals.detach()
        gt = gt.to(proposals)
        boxes = torch.cat([gt, proposals])
        is_gt = torch.arange(len(boxes), device=boxes.device) < len(gt)
        if len(gt) == 0:
            matched = torch.full((len(boxes),), Matcher.BELOW_LOW_THRESHOLD, device=boxes.device)
        else:
            matched = self.matcher(box_iou(gt, boxes))
        foreground = matched >= 0
        positive, negative = self.sampler([foreground.long()])
        keep = torch.nonzero(positive[0].bool() | negative[0].bool()).squeeze(1)
        labels = torch.where(foreground[keep], LESION, BACKGROUND)
        targets = torch.zeros((len(keep), 4), dtype=boxes.dtype, device=boxes.device)
        fg = foreground[keep]
        if fg.any():
            targets[fg] = self.box_coder.encode_single(gt[matched[keep][fg]], boxes[keep][fg])
        return SampledRoIs(boxes=boxes[keep], labels=labels, regression_targets=targets, is_gt=is_gt[keep])
