"""Anchor-based Region Proposal Network on the single res4 map (Ren et al., "Faster R-CNN",
NeurIPS 2015, section 3.1; detectron2 ``RPN`` defaults as listed in spec section 3.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher
from torchvision.models.detection.rpn import RPNHead

from ultradet.config import ExperimentConfig
from ultradet.modeling.proposal_generator.anchors import cell_anchors, grid_anchors, label_anchors
from ultradet.modeling.proposal_generator.selection import select_proposals
from ultradet.modeling.registry import PROPOSAL_GENERATORS

# RPN box deltas are not re-weighted (detectron2 ``RPN.BBOX_REG_WEIGHTS``, spec 3.3).
_RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


@PROPOSAL_GENERATORS.register("rpn")
class RPN(nn.Module):
    """3x3 conv + ReLU, then per anchor one objectness logit and 4 box deltas
    (``torchvision`` ``RPNHead``, weights ~ N(0, 0.01)).

    Training (per frame): anchors are matched to GT boxes by IoU (>= ``iou_thresholds[1]``
    foreground, < ``iou_thresholds[0]`` background, in between ignored; each GT also keeps its
    best anchors, Faster R-CNN's low-quality matches); ``batch_size_per_image`` anchors are
    sampled with at most ``positive_fraction`` foreground; loss = BCE objectness + L1 on the
    foreground deltas, each summed and divided by ``T * batch_size_per_image`` (detectron2).
    A frame without GT boxes contributes background anchors only.

    Args:
        in_channels: channels of the feature map (256). stride: its stride in pixels (16).
        anchor_sizes, anchor_aspect_ratios: anchors per location = len(sizes) * len(ratios) (30).
        pre_nms_topk_train/test, post_nms_topk_train/test, nms_thresh: proposal selection.
        iou_thresholds: (background below, foreground at or above).
        batch_size_per_image, positive_fraction: anchor sampling.
    """

    def __init__(
        self,
        *,
        in_channels: int = 256,
        stride: int = 16,
        anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0),
        anchor_aspect_ratios: tuple[float, ...] = (0.33, 0.5, 0.66, 1.0, 2.0, 3.0),
        pre_nms_topk_train: int = 256,
        pre_nms_topk_test: int = 256,
        post_nms_topk_train: int = 16,
        post_nms_topk_test: int = 16,
        nms_thresh: float = 0.7,
        iou_thresholds: tuple[float, float] = (0.3, 0.7),
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
    ):
        super().__init__()
        self.stride = stride
        anchors = cell_anchors(tuple(anchor_sizes), tuple(anchor_aspect_ratios))
        self.register_buffer("cell_anchors", anchors, persistent=False)  # from the config, not checkpoints
        self.num_anchors = len(self.cell_anchors)
        self.head = RPNHead(in_channels, self.num_anchors)
        self.box_coder = BoxCoder(_RPN_BOX_WEIGHTS)
        low, high = iou_thresholds
        self.matcher = Matcher(high, low, allow_low_quality_matches=True)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.batch_size_per_image = batch_size_per_image
        self.topk = {True: (pre_nms_topk_train, post_nms_topk_train), False: (pre_nms_topk_test, post_nms_topk_test)}
        self.nms_thresh = nms_thresh

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, in_channels: int = 256, stride: int = 16) -> "RPN":
        c = cfg.model.rpn
        return cls(
            in_channels=in_channels,
            stride=stride,
            anchor_sizes=c.anchor_sizes,
            anchor_aspect_ratios=c.anchor_aspect_ratios,
            pre_nms_topk_train=c.pre_nms_topk_train,
            pre_nms_topk_test=c.pre_nms_topk_test,
            post_nms_topk_train=c.post_nms_topk_train,
            post_nms_topk_test=c.post_nms_topk_test,
            nms_thresh=c.nms_thresh,
            iou_thresholds=c.iou_thresholds,
            batch_size_per_image=c.batch_size_per_image,
            positive_fraction=c.positive_fraction,
        )

    def anchors(self, grid_size: tuple[int, int]) -> torch.Tensor:
        """``FloatTensor[h * w * A, 4]``, XYXY pixels, for an ``(h, w)`` feature grid."""
        return grid_anchors(self.cell_anchors, grid_size, self.stride)

    def forward(
        self, features: torch.Tensor, image_size: tuple[int, int], targets: list[dict] | None = None
    ) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """
        Args:
            features: ``FloatTensor[T, C, h, w]``, res4 maps of T frames.
            image_size: ``(H, W)`` of the (shared) input image size.
            targets: training only: T dicts ``{"boxes": FloatTensor[K, 4] XYXY pixels, ...}``.

        Returns:
            ``(proposals, losses)``: T dicts ``{"boxes": FloatTensor[P, 4], "scores":
            FloatTensor[P]}`` (XYXY input pixels, objectness probability, ``P <= post_nms_topk``)
            and ``{"loss_rpn_cls", "loss_rpn_loc"}`` in training, ``{}`` otherwise.

        Raises:
            ValueError: training without ``targets``, or with one target dict per frame missing.
        """
        logits, deltas = self.head([features])
        frames, _, h, w = features.shape
        # [T, A, h, w] -> [T, h*w*A]; [T, A*4, h, w] -> [T, h*w*A, 4]: the anchors' order.
        logits = logits[0].permute(0, 2, 3, 1).reshape(frames, -1)
        deltas = deltas[0].view(frames, self.num_anchors, 4, h, w).permute(0, 3, 4, 1, 2).reshape(frames, -1, 4)
        anchors = self.anchors((h, w)).to(deltas.dtype)
        pre, post = self.topk[self.training]
        proposals = []
        for frame_logits, frame_deltas in zip(logits, deltas):
            boxes = self.box_coder.decode_single(frame_deltas.detach(), anchors)
            proposals.append(
                select_proposals(
                    boxes,
                    frame_logits.sigmoid(),
                    image_size,
                    pre_nms_topk=pre,
                    nms_thresh=self.nms_thresh,
                    post_nms_topk=post,
                )
            )
        if not self.training:
            return proposals, {}
        if targets is None or len(targets) != frames:
            raise ValueError(f"RPN training needs one target dict per frame ({frames})")
        return proposals, self.losses(anchors, logits, deltas, targets)

    def label_anchors(self, anchors: torch.Tensor, gt_boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Match one frame's anchors (``[N, 4]``) to its GT boxes (``[K, 4]``, K may be 0).

        Returns:
            ``labels``: ``FloatTensor[N]``, 1 foreground, 0 background, -1 ignored;
            ``matched_gt``: ``FloatTensor[N, 4]``, the matched GT box of each anchor (meaningful
            for foreground anchors only).
        """
        return label_anchors(anchors, gt_boxes, self.matcher)

    def losses(
        self, anchors: torch.Tensor, logits: torch.Tensor, deltas: torch.Tensor, targets: list[dict]
    ) -> dict[str, torch.Tensor]:
        """RPN losses of T frames: ``logits`` ``[T, N]``, ``deltas`` ``[T, N, 4]``, shared
        ``anchors`` ``[N, 4]``. Sampling uses the global torch RNG."""
        labels, matched = zip(*(self.label_anchors(anchors, t["boxes"].to(anchors)) for t in targets))
        positive, negative = self.sampler([lab.long() for lab in labels])
        positive, negative = torch.stack(positive).bool(), torch.stack(negative).bool()
        labels = torch.stack(labels)
        # Encode foreground anchors only: background ones may be matched to nothing (K = 0).
        frame_anchors = anchors.expand(len(targets), -1, -1)
        target_deltas = self.box_coder.encode_single(torch.stack(matched)[positive], frame_anchors[positive])
        normaliser = self.batch_size_per_image * len(targets)
        sampled = positive | negative
        loss_cls = F.binary_cross_entropy_with_logits(logits[sampled], labels[sampled], reduction="sum")
        loss_loc = F.l1_loss(deltas[positive], target_deltas, reduction="sum")
        return {"loss_rpn_cls": loss_cls / normaliser, "loss_rpn_loc": loss_loc / normaliser}
