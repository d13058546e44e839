"""FCOS (Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection", ICCV 2019) on the single
res4 map, as the UltraDet repository builds its FCOS row (baselines spec 2.2: ``FCOS`` proposal
generator of a ``TemporalProposalNetwork``, ``proposal_generator/fcos.py``, ``fcos_outputs.py``,
``losses/iou_loss.py``; ``MODEL.FCOS`` defaults of ``ultrasound_vid/config.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms, sigmoid_focal_loss

from ultradet.config import ExperimentConfig
from ultradet.modeling.dense_heads.fcos_assignment import assign_locations, centerness_targets
from ultradet.modeling.distributed import all_reduce_mean
from ultradet.modeling.proposal_generator.dense_layers import conv_tower, grid_locations, init_dense_head, ltrb_to_boxes
from ultradet.modeling.proposal_generator.selection import clip_nonempty
from ultradet.modeling.registry import DENSE_HEADS


@DENSE_HEADS.register("fcos")
class FCOSHead(nn.Module):
    """FCOS's head, targets, losses and test-time selection on one feature level that takes every
    object size (baselines spec 2.2).

    Head: a class tower and a box tower, each ``num_convs`` x (Conv3x3, GroupNorm 32, ReLU), no
    shared tower; the class logit (Conv3x3 -> 1, bias at ``prior_prob``) on the class tower; the
    (l, t, r, b) distances ``ReLU(s * Conv3x3(box tower))`` in units of the stride, ``s`` a
    learnt scalar initialised to 1 (FCOS's ``Scale`` and the "improved FCOS" ReLU), and the
    centerness logit (Conv3x3 -> 1) on the box tower. Every conv N(0, 0.01^2), zero bias.
    Locations: the cell centres ``(16 j + 8, 16 i + 8)``.

    Training (:mod:`~ultradet.modeling.dense_heads.fcos_assignment`): centre sampling within
    ``center_sampling_radius`` strides of the GT centre, clipped to the box; ties to the GT of
    smallest area; distance targets divided by the stride. Losses over the T frames of a clip
    (the original's batch on one GPU is one clip):

    * ``loss_fcos_cls``: sigmoid focal loss (``focal_alpha``, ``focal_gamma``) summed over all
      locations / the number of foreground locations (at least 1). **Deviation**: the
      original's ``LOSS_ALPHA`` is 0.5 (``config.py``, not overridden by its FCOS config);
      FCOS uses 0.25.
    * ``loss_fcos_loc``: :func:`ltrb_giou_loss` (GIoU with the original's +1 smoothing, in stride
      units) of the foreground locations weighted by their centerness targets / the sum of
      those targets (at least 1e-6).
    * ``loss_fcos_ctr``: BCE of the centerness logits against the centerness targets, summed
      over the foreground / the number of foreground locations (at least 1).

    The original divides by these counts averaged over its GPUs (``reduce_sum / world_size``);
    here they are averaged over ``torch.distributed``'s workers when a process group is
    initialised (every worker must then compute the losses of a clip together), else they are
    this clip's own. So, as in the original, the gradient of a clip depends on the clips the
    other workers hold at the same time: unlike the other heads, FCOS's step is not the same for
    every split of a global batch into workers and accumulation steps.

    Detections of each frame (:func:`select_detections`; the same rule in training, where
    nothing uses them): ``p = sigmoid(cls)`` above ``score_thresh_test``, the
    ``pre_nms_topk_test`` best ``p * sigmoid(ctr)``, score ``sqrt(p * sigmoid(ctr))``, NMS at
    ``nms_thresh_test``, every score at least the ``detections_per_image``-th largest.

    Args:
        in_channels: feature channels (a multiple of 32). stride: feature stride in pixels (16).
        num_convs: depth of each tower. prior_prob: initial ``sigmoid(cls)``.
        center_sampling_radius: in strides. focal_alpha, focal_gamma: the class loss.
        score_thresh_test, pre_nms_topk_test, nms_thresh_test, detections_per_image: selection.
    """

    def __init__(
        self,
        *,
        in_channels: int = 256,
        stride: int = 16,
        num_convs: int = 4,
        prior_prob: float = 0.01,
        center_sampling_radius: float = 1.5,
        focal_alpha: float = 0.5,
        focal_gamma: float = 2.0,
        score_thresh_test: float = 0.05,
        pre_nms_topk_test: int = 256,
        nms_thresh_test: float = 0.6,
        detections_per_image: int = 16,
    ):
        super().__init__()
        self.cls_tower = conv_tower(in_channels, num_convs)
        self.box_tower = conv_tower(in_channels, num_convs)
        self.cls_score = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.box_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.box_scale = nn.Parameter(torch.ones(()))
        init_dense_head(self, self.cls_score, prior_prob)
        self.stride = stride
        self.radius = center_sampling_radius * stride
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.score_thresh = score_thresh_test
        self.pre_nms_topk = pre_nms_topk_test
        self.nms_thresh = nms_thresh_test
        self.detections_per_image = detections_per_image

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, *, in_channels: int, stride: int) -> "FCOSHead":
        """The head of ``cfg.model.fcos`` over a map of ``in_channels`` channels and ``stride`` pixels."""
        return cls(in_channels=in_channels, stride=stride, **cfg.model.fcos.model_dump())

    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dense outputs of ``FloatTensor[T, C, h, w]`` at the ``h * w`` locations (row-major):
        ``cls_logits`` ``[T, h*w]``, ``ltrb`` ``[T, h*w, 4]`` (l, t, r, b) >= 0 in strides,
        ``ctr_logits`` ``[T, h*w]``."""
        frames = len(features)
        box_features = self.box_tower(features)
        cls_logits = self.cls_score(self.cls_tower(features)).reshape(frames, -1)
        raw = self.box_pred(box_features).permute(0, 2, 3, 1).reshape(frames, -1, 4)
        ltrb = F.relu(self.box_scale * raw)
        ctr_logits = self.centerness(box_features).reshape(frames, -1)
        return cls_logits, ltrb, ctr_logits

    def forward(
        self, features: torch.Tensor, image_size: tuple[int, int], targets: list[dict] | None = None
    ) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """The dense-head contract (``ultradet.modeling.dense_heads``).

        Args:
            features: ``FloatTensor[T, C, h, w]``. image_size: ``(H, W)`` of the input images.
            targets: training only, one ``{"boxes": FloatTensor[K, 4] (XYXY pixels), "labels"}``
                dict per frame.

        Returns:
            ``(detections, losses)``: T dicts ``{"boxes": FloatTensor[N, 4] (XYXY input pixels,
            clipped to the image), "scores": FloatTensor[N]}`` (:func:`select_detections`,
            detached); ``{"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}`` in training, ``{}``
            otherwise.

        Raises:
            ValueError: ``features`` is not 4-D, or training without one target dict per frame.
        """
        if features.dim() != 4:
            raise ValueError(f"FCOS expects features FloatTensor[T, C, h, w], got shape {tuple(features.shape)}")
        grid = grid_locations(tuple(features.shape[-2:]), self.stride, features.device)
        cls_logits, ltrb, ctr_logits = self.predict(features)
        with torch.no_grad():
            boxes = ltrb_to_boxes(grid, ltrb * self.stride)
            detections = [
                select_detections(
                    b,
                    p,
                    c,
                    image_size,
                    score_thresh=self.score_thresh,
                    pre_nms_topk=self.pre_nms_topk,
                    nms_thresh=self.nms_thresh,
                    detections_per_image=self.detections_per_image,
                )
                for b, p, c in zip(boxes, cls_logits.sigmoid(), ctr_logits.sigmoid())
            ]
        if not self.training:
            return detections, {}
        if targets is None or len(targets) != len(features):
            raise ValueError(f"FCOS training needs one target dict per frame ({len(features)})")
        return detections, self.losses(cls_logits, ltrb, ctr_logits, grid, targets)

    def losses(
        self,
        cls_logits: torch.Tensor,
        ltrb: torch.Tensor,
        ctr_logits: torch.Tensor,
        grid: torch.Tensor,
        targets: list[dict],
    ) -> dict[str, torch.Tensor]:
        """Losses of T frames (see the class docstring): outputs as :meth:`predict` at the
        ``grid`` locations ``[N, 2]``; ``targets`` as in :meth:`forward`. Computed in float32."""
        with torch.no_grad():
            assigned = [assign_locations(grid, t["boxes"].to(grid), self.radius) for t in targets]
            foreground = torch.stack([matched >= 0 for matched, _ in assigned])  # [T, N]
            reg_targets = torch.stack([distances for _, distances in assigned])[foreground] / self.stride
            ctr_targets = centerness_targets(reg_targets)
            num_fg = max(all_reduce_mean(foreground.sum().float()), 1.0)
            ctr_sum = max(all_reduce_mean(ctr_targets.sum()), 1e-6)
        cls_logits, ltrb, ctr_logits = cls_logits.float(), ltrb.float(), ctr_logits.float()
        loss_cls = sigmoid_focal_loss(
            cls_logits, foreground.to(cls_logits.dtype), alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum"
        )
        if len(reg_targets):
            loss_loc = ltrb_giou_loss(ltrb[foreground], reg_targets, ctr_targets) / ctr_sum
            loss_ctr = F.binary_cross_entropy_with_logits(ctr_logits[foreground], ctr_targets, reduction="sum") / num_fg
        else:  # no foreground in the clip: zero, but still in the graph
            loss_loc, loss_ctr = ltrb.sum() * 0.0, ctr_logits.sum() * 0.0
        return {"loss_fcos_cls": loss_cls / num_fg, "loss_fcos_loc": loss_loc, "loss_fcos_ctr": loss_ctr}


def ltrb_giou_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The original's GIoU loss on (l, t, r, b) distances from the same location (its
    ``IOULoss("giou")``, baselines spec 2.2), summed with weights.

    Per pair, with areas ``A_p``, ``A_t``, intersection ``I`` (sums of the smaller distances),
    union ``U = A_p + A_t - I`` and enclosing box ``C`` (sums of the larger distances) + 1e-7:
    ``IoU = (I + 1) / (U + 1)``, ``loss = 1 - (IoU - (C - U) / C)``. The +1 smoothing is in the
    units of the distances, here strides (1 stride^2 = 256 px^2 at stride 16), so it lifts the IoU
    of small boxes markedly; this is why torchvision's unsmoothed ``generalized_box_iou_loss`` is
    not used.

    Args:
        pred, target: ``FloatTensor[M, 4]``, (l, t, r, b) >= 0, the same unit.
        weight: ``FloatTensor[M]`` (the centerness targets, all positive for locations inside
            their box).

    Returns:
        Scalar ``sum(weight * loss)``.
    """
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    smaller, larger = torch.minimum(pred, target), torch.maximum(pred, target)
    intersection = (smaller[:, 0] + smaller[:, 2]) * (smaller[:, 1] + smaller[:, 3])
    enclosing = (larger[:, 0] + larger[:, 2]) * (larger[:, 1] + larger[:, 3]) + 1e-7
    union = pred_area + target_area - intersection
    iou = (intersection + 1.0) / (union + 1.0)
    giou = iou - (enclosing - union) / enclosing
    return ((1.0 - giou) * weight).sum()


def select_detections(
    boxes: torch.Tensor,
    cls_prob: torch.Tensor,
    ctr_prob: torch.Tensor,
    image_size: tuple[int, int],
    *,
    score_thresh: float,
    pre_nms_topk: int,
    nms_thresh: float,
    detections_per_image: int,
) -> dict[str, torch.Tensor]:
    """FCOS's test-time selection on one frame, in the original's order (baselines spec 2.2,
    ``fcos_outputs.py:forward_for_single_feature_map``, ``select_over_all_levels``, then
    detectron2's ``detector_postprocess``):

    1. candidates: ``cls_prob > score_thresh`` (on the class probability alone,
       ``THRESH_WITH_CTR False``);
    2. the ``pre_nms_topk`` candidates of highest ``cls_prob * ctr_prob``;
    3. score ``sqrt(cls_prob * ctr_prob)``; NMS at ``nms_thresh`` on the unclipped boxes;
    4. if more than ``detections_per_image`` remain, keep every score at least the
       ``detections_per_image``-th largest, so tied scores can keep more (the original's
       ``kthvalue`` cut);
    5. clip to the image and drop boxes of zero width or height.

    Args:
        boxes: ``FloatTensor[N, 4]``, XYXY input pixels. cls_prob, ctr_prob: ``FloatTensor[N]``
            in [0, 1]. image_size: ``(H, W)``.

    Returns:
        ``{"boxes": FloatTensor[P, 4], "scores": FloatTensor[P]}``, sorted by decreasing score,
        boxes XYXY inside ``[0, W] x [0, H]`` with positive width and height.
    """
    candidates = (cls_prob > score_thresh).nonzero().flatten()
    joint = cls_prob[candidates] * ctr_prob[candidates]
    joint, order = joint.topk(min(pre_nms_topk, len(joint)))
    boxes, scores = boxes[candidates[order]], joint.sqrt()
    keep = nms(boxes, scores, nms_thresh)
    boxes, scores = boxes[keep], scores[keep]
    if len(scores) > detections_per_image:
        kept = scores >= scores.topk(detections_per_image).values[-1]
        boxes, scores = boxes[kept], scores[kept]
    return clip_nonempty(boxes, scores, image_size)
