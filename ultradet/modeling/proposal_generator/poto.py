"""POTO proposals: DeFCN's one-to-one fully convolutional detector (Wang et al., "End-to-End
Object Detection with Fully Convolutional Network", CVPR 2021) on the single res4 map, used as
the proposal generator of a two-stage model (spec section 3.3, ``configs/DeFCN`` defaults)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss

from ultradet.config import ExperimentConfig
from ultradet.modeling.proposal_generator.dense_layers import conv_tower, grid_locations, init_dense_head, ltrb_to_boxes
from ultradet.modeling.proposal_generator.max_filter import MaxFiltering3D
from ultradet.modeling.proposal_generator.poto_assignment import (
    auxiliary_assignment,
    candidate_mask,
    inside_mask,
    one_to_one_assignment,
    quality,
)
from ultradet.modeling.proposal_generator.selection import select_proposals
from ultradet.modeling.registry import PROPOSAL_GENERATORS


@dataclass
class POTOTargets:
    """Training targets of T frames of N locations.

    Attributes:
        cls: ``FloatTensor[T, N]``, 1 at the one-to-one (POTO) foreground locations.
        aux: ``FloatTensor[T, N]``, 1 at the many-to-one auxiliary foreground locations.
        frame_index, location_index: ``LongTensor[M]``, the M one-to-one foreground locations.
        gt_boxes: ``FloatTensor[M, 4]``, XYXY pixels, the GT box each of them predicts.
    """

    cls: torch.Tensor
    aux: torch.Tensor
    frame_index: torch.Tensor
    location_index: torch.Tensor
    gt_boxes: torch.Tensor


def _joint_logit(cls_logits: torch.Tensor, filter_logits: torch.Tensor) -> torch.Tensor:
    """``logit(sigmoid(a) * sigmoid(b))``, computed in log space and float32 (also under AMP:
    1 - p underflows in float16) so it stays finite."""
    log_p = F.logsigmoid(cls_logits.float()) + F.logsigmoid(filter_logits.float())
    log_not_p = torch.log(-torch.expm1(log_p).clamp(max=-1e-12))
    return log_p - log_not_p


@PROPOSAL_GENERATORS.register("poto")
class POTO(nn.Module):
    """FCOS-like head + POTO assignment + 3D max filtering + auxiliary loss (DeFCN).

    Per location ``(x, y)`` (the res4 cell centres, ``stride * (j + 0.5)``): a classification
    logit (cls tower), ltrb distances (box tower) and a "filter" logit computed from the box tower
    through :class:`MaxFiltering3D`. Foreground probability ``p = sigmoid(cls) * sigmoid(filter)``
    (DeFCN section 3.3).

    Box regression as the original DeFCN head (FCOS with ``NORM_REG_TARGETS``): the network
    regresses the distances (l, t, r, b) in units of the stride, ``ReLU(s * r)`` with ``r`` the
    box conv's output and ``s`` a learnt scalar (FCOS's ``Scale``, initialised to 1), so a
    distance in pixels is ``ReLU(s * r) * stride``. Initialisation is FCOS's and DeFCN's: every
    conv N(0, 0.01) with zero bias, the cls bias at ``prior_prob``. A side whose ``s * r`` is
    below zero gets no gradient (each GT trains one location) until shared weights lift it, so
    the head wants the solver's moderate steps: at lr 1e-3 without warm-up it does not learn
    boxes (``tests/modeling/test_meta_arch.py``).

    Training (per frame, DeFCN section 3): quality ``Q = p^(1-alpha) * IoU^alpha`` (eq. 3,
    detached) between each GT and each location's predicted box, restricted to the centre-sampling
    candidates; one-to-one Hungarian assignment maximising Q (eq. 2). Losses over the clip,
    each divided by its number of foreground locations (at least 1):

    * ``loss_poto_cls``: sigmoid focal loss of ``p`` against the one-to-one targets;
    * ``loss_poto_reg``: ``reg_weight`` x GIoU loss of the matched locations' boxes against
      their GT boxes. The original computes it on pixel ltrb (DeFCN) or stride-normalised ltrb
      (FCOS); GIoU is invariant to translation and scale, so both equal this loss on the XYXY
      pixel boxes;
    * ``loss_poto_aux``: sigmoid focal loss of ``sigmoid(cls)`` alone against the many-to-one
      targets of :func:`auxiliary_assignment` (top-k quality over all locations, kept inside the
      GT box; quality computed with ``sigmoid(cls)``), which gives the classification branch
      dense supervision while the filter learns to keep one.

    A frame without GT boxes has only background targets. Proposals: ``pre_nms_topk`` best
    ``p``, NMS at ``nms_thresh``, ``num_proposals`` best (the same in training and test).

    Args:
        in_channels: feature channels (256, multiple of 32). stride: feature stride (16).
        poto_alpha, center_sampling_radius (in strides), aux_topk: assignment.
        filter_kernel_size, filter_tau: :class:`MaxFiltering3D`.
        focal_alpha, focal_gamma, reg_weight: losses. prior_prob: initial ``sigmoid(cls)``.
        num_convs: tower depth. pre_nms_topk, nms_thresh, num_proposals: proposal selection.
        box_bias_init: initial bias of the box conv, in strides (0 = FCOS's init).
    """

    def __init__(
        self,
        *,
        in_channels: int = 256,
        stride: int = 16,
        poto_alpha: float = 0.8,
        center_sampling_radius: float = 1.5,
        aux_topk: int = 9,
        filter_kernel_size: int = 3,
        filter_tau: int = 2,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        reg_weight: float = 2.0,
        prior_prob: float = 0.01,
        num_convs: int = 4,
        pre_nms_topk: int = 256,
        num_proposals: int = 16,
        nms_thresh: float = 0.6,
        box_bias_init: float = 0.0,
    ):
        super().__init__()
        self.cls_tower = conv_tower(in_channels, num_convs)
        self.box_tower = conv_tower(in_channels, num_convs)
        self.cls_score = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.box_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.box_scale = nn.Parameter(torch.ones(()))
        self.max_filter = MaxFiltering3D(channels=in_channels, kernel_size=filter_kernel_size, tau=filter_tau)
        self.filter_score = nn.Conv2d(in_channels, 1, 3, padding=1)
        # FCOS/DeFCN init (the box conv too: its outputs start around 0, half of them in ReLU's
        # flat part, where a side gets no gradient and can stay dead; box_scale starts at 1).
        # box_bias_init > 0 shifts every side into ReLU's live part.
        init_dense_head(self, self.cls_score, prior_prob)
        nn.init.constant_(self.box_pred.bias, box_bias_init)
        self.stride = stride
        self.alpha = poto_alpha
        self.radius = center_sampling_radius * stride
        self.aux_topk = aux_topk
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.reg_weight = reg_weight
        self.pre_nms_topk = pre_nms_topk
        self.num_proposals = num_proposals
        self.nms_thresh = nms_thresh

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, in_channels: int = 256, stride: int = 16) -> "POTO":
        return cls(in_channels=in_channels, stride=stride, **cfg.model.poto.model_dump())

    def locations(self, grid_size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """``FloatTensor[h * w, 2]``: (x, y) pixels of the cell centres, row-major (:func:`grid_locations`)."""
        return grid_locations(grid_size, self.stride, device)

    def predict(self, features: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dense outputs of ``FloatTensor[T, C, h, w]`` at the ``grid`` (``[h*w, 2]``, (x, y)
        pixels) locations: ``cls_logits`` ``[T, h*w]``, ``filter_logits`` ``[T, h*w]``, ``boxes``
        ``[T, h*w, 4]``, XYXY pixels ``(x - l, y - t, x + r, y + b)`` with ``(l, t, r, b) =
        ReLU(box_scale * box_pred) * stride``; a box may have zero width or height."""
        frames = len(features)
        box_features = self.box_tower(features)
        cls_logits = self.cls_score(self.cls_tower(features)).reshape(frames, -1)
        filter_logits = self.filter_score(self.max_filter([box_features])[0]).reshape(frames, -1)
        raw = self.box_pred(box_features).permute(0, 2, 3, 1).reshape(frames, -1, 4)
        ltrb = F.relu(self.box_scale * raw) * self.stride
        return cls_logits, filter_logits, ltrb_to_boxes(grid, ltrb)

    def forward(
        self, features: torch.Tensor, image_size: tuple[int, int], targets: list[dict] | None = None
    ) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """Same contract as :meth:`ultradet.modeling.proposal_generator.rpn.RPN.forward`; the
        training losses are ``{"loss_poto_cls", "loss_poto_reg", "loss_poto_aux"}``.

        Raises:
            ValueError: training without one target dict per frame.
        """
        grid = self.locations(tuple(features.shape[-2:]), features.device)
        cls_logits, filter_logits, boxes = self.predict(features, grid)
        joint = _joint_logit(cls_logits, filter_logits)
        proposals = [
            select_proposals(
                b,
                s.sigmoid(),
                image_size,
                pre_nms_topk=self.pre_nms_topk,
                nms_thresh=self.nms_thresh,
                post_nms_topk=self.num_proposals,
            )
            for b, s in zip(boxes, joint)
        ]
        if not self.training:
            return proposals, {}
        if targets is None or len(targets) != len(features):
            raise ValueError(f"POTO training needs one target dict per frame ({len(features)})")
        return proposals, self.losses(cls_logits, joint, boxes, grid, targets)

    @torch.no_grad()
    def assign(
        self,
        cls_logits: torch.Tensor,
        joint: torch.Tensor,
        boxes: torch.Tensor,
        grid: torch.Tensor,
        targets: list[dict],
    ) -> POTOTargets:
        """Per-frame targets of T frames (arguments as :meth:`losses`); the predictions only rank
        locations, so nothing here is differentiated."""
        cls_targets = torch.zeros_like(joint)
        aux_targets = torch.zeros_like(joint)
        frame_idx, loc_idx, gt_boxes = [], [], []
        for t, target in enumerate(targets):
            gt = target["boxes"].to(boxes)
            if len(gt) == 0:
                continue
            candidates = candidate_mask(grid, gt, self.radius)
            iou = box_iou(gt, boxes[t])
            gt_i, loc_i = one_to_one_assignment(quality(joint[t].sigmoid(), iou, self.alpha), candidates)
            cls_targets[t, loc_i] = 1.0
            frame_idx.append(torch.full_like(loc_i, t))
            loc_idx.append(loc_i)
            gt_boxes.append(gt[gt_i])
            aux_quality = quality(cls_logits[t].sigmoid(), iou, self.alpha)
            aux = auxiliary_assignment(aux_quality, inside_mask(grid, gt), self.aux_topk)
            aux_targets[t] = (aux >= 0).to(aux_targets.dtype)
        empty = torch.zeros(0, dtype=torch.long, device=joint.device)
        return POTOTargets(
            cls=cls_targets,
            aux=aux_targets,
            frame_index=torch.cat(frame_idx) if frame_idx else empty,
            location_index=torch.cat(loc_idx) if loc_idx else empty,
            gt_boxes=torch.cat(gt_boxes) if gt_boxes else boxes.new_zeros(0, 4),
        )

    def losses(
        self,
        cls_logits: torch.Tensor,
        joint: torch.Tensor,
        boxes: torch.Tensor,
        grid: torch.Tensor,
        targets: list[dict],
    ) -> dict[str, torch.Tensor]:
        """Losses of T frames: ``cls_logits``, ``joint`` (logit of ``p``) ``[T, N]``, ``boxes``
        ``[T, N, 4]`` XYXY pixels at the ``grid`` locations ``[N, 2]``; ``targets`` as in
        :meth:`forward`."""
        assigned = self.assign(cls_logits, joint, boxes, grid, targets)
        num_fg = max(1.0, float(assigned.cls.sum()))
        focal = dict(alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum")
        loss_cls = sigmoid_focal_loss(joint, assigned.cls, **focal) / num_fg
        matched = boxes[assigned.frame_index, assigned.location_index]
        if len(matched):
            giou = generalized_box_iou_loss(matched, assigned.gt_boxes, reduction="sum")
        else:  # no GT in the clip: zero, but still in the graph
            giou = boxes.sum() * 0.0
        loss_aux = sigmoid_focal_loss(cls_logits, assigned.aux, **focal) / max(1.0, float(assigned.aux.sum()))
        return {"loss_poto_cls": loss_cls, "loss_poto_reg": self.reg_weight * giou / num_fg, "loss_poto_aux": loss_aux}
