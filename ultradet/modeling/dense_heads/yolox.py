"""YOLOX's decoupled head on the single res4 map (Ge et al., "YOLOX: Exceeding YOLO Series in
2021", sections 2.1-2.2), as the original UltraDet repository builds its YOLOX baseline
(baselines spec 2.3, ``configs/YOLOX``): per-cell box, objectness and class predictions, SimOTA
assignment (:mod:`ultradet.modeling.dense_heads.yolox_assignment`), and its losses and test-time
selection."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou, nms

from ultradet.config import ExperimentConfig
from ultradet.modeling.dense_heads.yolox_assignment import simota_assign
from ultradet.modeling.proposal_generator.dense_layers import GN_GROUPS, prior_logit
from ultradet.modeling.proposal_generator.selection import clip_nonempty
from ultradet.modeling.registry import DENSE_HEADS

# exp(t_w) is capped so that a diverging width decodes to a finite 1e5 strides (never a real
# box) instead of inf; the L1 loss on the raw t_w still pulls such an output back.
MAX_LOG_SIZE = math.log(1e5)
# The original's guard in the L1 target log(w / stride + eps).
L1_LOG_EPS = 1e-8


def _conv_norm_silu(in_channels: int, out_channels: int, kernel_size: int, norm: str) -> nn.Sequential:
    """Conv (no bias, "same" padding) + BatchNorm (``norm="bn"``) or GroupNorm 32 (``"gn"``) +
    SiLU, YOLOX's ``BaseConv``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels) if norm == "bn" else nn.GroupNorm(GN_GROUPS, out_channels),
        nn.SiLU(inplace=True),
    )


def _branch(channels: int, num_convs: int, norm: str) -> nn.Sequential:
    """``num_convs`` x (3x3 conv + norm + SiLU)."""
    return nn.Sequential(*[_conv_norm_silu(channels, channels, 3, norm) for _ in range(num_convs)])


@DENSE_HEADS.register("yolox")
class YOLOXHead(nn.Module):
    """YOLOX's decoupled head, one level (baselines spec 2.3).

    Layers: stem 1x1 conv + BN + SiLU; class branch ``num_convs`` x (3x3 conv + BN + SiLU) ->
    1x1 conv -> 1 class logit; regression branch ``num_convs`` x (3x3 conv + BN + SiLU) -> 1x1
    conv -> 4 box outputs ``(t_x, t_y, t_w, t_h)`` and 1x1 conv -> 1 objectness logit. Every
    layer is ``in_channels`` wide. The BatchNorm is ordinary trainable BatchNorm: in training it
    normalises with the statistics of the clip's T frames (the original's batch is one clip per
    GPU); ``norm="gn"`` swaps it for GroupNorm, which has no train/test difference (for clips too
    short for BatchNorm's statistics). Convolutions keep PyTorch's default initialisation; the
    class and objectness biases start at ``prior_prob_cls`` (0.01) and ``prior_prob_obj`` (1e-5).
    **Deviation** (followed): YOLOX uses 0.01 for both; the original 1e-5 for objectness.

    Decoding of cell ``(g_x, g_y)`` (column, row): ``cx = (t_x + g_x) * stride``, ``cy = (t_y +
    g_y) * stride``, ``w = exp(t_w) * stride``, ``h = exp(t_h) * stride``. Note the cell offset
    ``g``, while SimOTA places the cell at its centre ``(g + 0.5) * stride``; both as the original.

    Training: SimOTA per frame (:func:`~ultradet.modeling.dense_heads.yolox_assignment.simota_assign`),
    then over the clip's frames, each loss divided by the clip's number of foreground cells
    ``F`` (at least 1):

    * ``loss_yolox_cls``: BCE of the foreground cells' class logits, target the IoU of the
      cell's (detached) predicted box with its GT box;
    * ``loss_yolox_obj``: BCE of every cell's objectness logit, target 1 on foreground cells;
    * ``loss_yolox_iou``: ``iou_loss_weight`` (5) x sum of ``1 - IoU^2`` over foreground cells;
    * ``loss_yolox_l1``: L1 of the foreground cells' raw outputs against ``(cx / stride - g_x,
      cy / stride - g_y, log(w / stride + 1e-8), log(h / stride + 1e-8))`` of their GT box.
      **Deviation** (followed): always on in the original (``l1_loss``); YOLOX adds it only in
      its last 15 epochs.

    Detections (in training too, with the same rule), per frame: score ``sigmoid(obj) *
    sigmoid(cls)``; the ``pre_nms_topk_test`` best; NMS at ``nms_thresh_test``; the first
    ``detections_per_image``; no score threshold (the original reads one and never uses it).
    Boxes are then clipped to the image and empty ones dropped (detectron2's
    ``detector_postprocess``, which the original's meta-architecture applies).

    Args:
        in_channels: feature channels (256). stride: feature stride, pixels (16).
        num_convs: 3x3 conv layers of each branch (2).
        norm: ``"bn"`` (the original's trainable BatchNorm) or ``"gn"`` (GroupNorm, 32 groups).
        prior_prob_cls, prior_prob_obj: initial probabilities (0.01, 1e-5).
        center_radius: SimOTA's centre region half-side, in strides (2.5).
        simota_topk_iou: IoUs summed for the dynamic k (10).
        simota_iou_weight: weight of ``-log IoU`` in SimOTA's cost (3).
        iou_loss_weight: weight of the IoU loss (5).
        l1_loss: add ``loss_yolox_l1`` (True, as the original).
        pre_nms_topk_test, nms_thresh_test, detections_per_image: detections (256, 0.7, 16).
    """

    def __init__(
        self,
        *,
        in_channels: int = 256,
        stride: int = 16,
        num_convs: int = 2,
        norm: str = "bn",
        prior_prob_cls: float = 0.01,
        prior_prob_obj: float = 1e-5,
        center_radius: float = 2.5,
        simota_topk_iou: int = 10,
        simota_iou_weight: float = 3.0,
        iou_loss_weight: float = 5.0,
        l1_loss: bool = True,
        pre_nms_topk_test: int = 256,
        nms_thresh_test: float = 0.7,
        detections_per_image: int = 16,
    ):
        super().__init__()
        if norm not in ("bn", "gn"):
            raise ValueError(f"YOLOX head norm must be 'bn' or 'gn', got {norm!r}")
        self.stem = _conv_norm_silu(in_channels, in_channels, 1, norm)
        self.cls_convs = _branch(in_channels, num_convs, norm)
        self.reg_convs = _branch(in_channels, num_convs, norm)
        self.cls_pred = nn.Conv2d(in_channels, 1, 1)
        self.reg_pred = nn.Conv2d(in_channels, 4, 1)
        self.obj_pred = nn.Conv2d(in_channels, 1, 1)
        nn.init.constant_(self.cls_pred.bias, prior_logit(prior_prob_cls))
        nn.init.constant_(self.obj_pred.bias, prior_logit(prior_prob_obj))
        self.stride = stride
        self.radius = center_radius * stride
        self.simota_topk_iou = simota_topk_iou
        self.simota_iou_weight = simota_iou_weight
        self.iou_loss_weight = iou_loss_weight
        self.l1_loss = l1_loss
        self.pre_nms_topk = pre_nms_topk_test
        self.nms_thresh = nms_thresh_test
        self.detections_per_image = detections_per_image

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, *, in_channels: int, stride: int) -> "YOLOXHead":
        """The head of ``cfg.model.yolox`` over a map of ``in_channels`` channels, ``stride`` pixels."""
        return cls(in_channels=in_channels, stride=stride, **cfg.model.yolox.model_dump())

    def cells(self, grid_size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """``FloatTensor[h * w, 2]``: the (column, row) indices ``(g_x, g_y)`` of the cells, row-major."""
        h, w = grid_size
        gy, gx = torch.meshgrid(
            torch.arange(h, device=device, dtype=torch.float32),
            torch.arange(w, device=device, dtype=torch.float32),
            indexing="ij",
        )
        return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)

    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw outputs of ``FloatTensor[T, C, h, w]``, cells row-major, in float32 (box areas of a
        ~950-pixel frame overflow float16): ``cls_logits`` ``[T, h*w]``, ``obj_logits``
        ``[T, h*w]``, ``raw`` ``[T, h*w, 4]`` = ``(t_x, t_y, t_w, t_h)``."""
        frames = len(features)
        stem = self.stem(features)
        reg_features = self.reg_convs(stem)
        cls_logits = self.cls_pred(self.cls_convs(stem)).reshape(frames, -1).float()
        obj_logits = self.obj_pred(reg_features).reshape(frames, -1).float()
        raw = self.reg_pred(reg_features).permute(0, 2, 3, 1).reshape(frames, -1, 4).float()
        return cls_logits, obj_logits, raw

    def decode(self, raw: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """XYXY pixel boxes ``[..., N, 4]`` of the raw outputs ``[..., N, 4]`` at the cells
        ``[N, 2]`` (class docstring; ``t_w``, ``t_h`` capped at ``log(1e5)`` so exp stays finite)."""
        centre = (raw[..., :2] + cells) * self.stride
        size = raw[..., 2:].clamp(max=MAX_LOG_SIZE).exp() * self.stride
        return torch.cat([centre - size / 2, centre + size / 2], dim=-1)

    def l1_targets(self, gt_boxes: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """The raw outputs ``[M, 4]`` that decode exactly to ``gt_boxes`` (``[M, 4]`` XYXY pixels)
        at ``cells`` (``[M, 2]``), the original's ``get_l1_target`` (with its ``+1e-8`` in the log)."""
        centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2 / self.stride - cells
        size = torch.log((gt_boxes[:, 2:] - gt_boxes[:, :2]) / self.stride + L1_LOG_EPS)
        return torch.cat([centre, size], dim=1)

    def forward(
        self, features: torch.Tensor, image_size: tuple[int, int], targets: list[dict] | None = None
    ) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """The dense-head contract (``ultradet.modeling.dense_heads``).

        Args:
            features: ``FloatTensor[T, C, h, w]``, the res4 map of T frames.
            image_size: ``(H, W)`` of the input images, pixels.
            targets: training only, one ``{"boxes": FloatTensor[K, 4] (XYXY pixels), "labels"}``
                dict per frame.

        Returns:
            ``(detections, losses)``: T dicts ``{"boxes": FloatTensor[N, 4] (XYXY input pixels),
            "scores": FloatTensor[N]}``, ``N <= detections_per_image``, by decreasing score; the
            losses ``{"loss_yolox_cls", "loss_yolox_obj", "loss_yolox_iou"}`` (and
            ``"loss_yolox_l1"`` with ``l1_loss``) in training, ``{}`` at test.

        Raises:
            ValueError: training without one target dict per frame, or with a GT box of
                non-positive width or height.
        """
        cells = self.cells(tuple(features.shape[-2:]), features.device)
        cls_logits, obj_logits, raw = self.predict(features)
        boxes = self.decode(raw, cells)
        scores = obj_logits.sigmoid() * cls_logits.sigmoid()
        detections = [self.select(b, s, image_size) for b, s in zip(boxes, scores)]
        if not self.training:
            return detections, {}
        _check_targets(targets, len(features))
        return detections, self.losses(cls_logits, obj_logits, raw, boxes, cells, image_size, targets)

    @torch.no_grad()
    def select(self, boxes: torch.Tensor, scores: torch.Tensor, image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """One frame's detections (class docstring) from its ``boxes`` ``[N, 4]`` (XYXY pixels)
        and ``scores`` ``[N]`` (probabilities): top-k, NMS on the unclipped boxes, first k, clip,
        drop empty boxes."""
        scores, order = scores.topk(min(self.pre_nms_topk, len(scores)))
        boxes = boxes[order]
        keep = nms(boxes, scores, self.nms_thresh)[: self.detections_per_image]
        return clip_nonempty(boxes[keep], scores[keep], image_size)

    def losses(
        self,
        cls_logits: torch.Tensor,
        obj_logits: torch.Tensor,
        raw: torch.Tensor,
        boxes: torch.Tensor,
        cells: torch.Tensor,
        image_size: tuple[int, int],
        targets: list[dict],
    ) -> dict[str, torch.Tensor]:
        """Losses of T frames (class docstring): ``cls_logits``, ``obj_logits`` ``[T, N]``,
        ``raw`` ``[T, N, 4]``, their decoded ``boxes`` ``[T, N, 4]`` (XYXY pixels) at ``cells``
        ``[N, 2]``; ``image_size`` and ``targets`` as in :meth:`forward`."""
        centres = (cells + 0.5) * self.stride
        gt_index = torch.stack(
            [
                simota_assign(
                    centres, c, o, b, t["boxes"].to(b), image_size,
                    radius=self.radius, iou_weight=self.simota_iou_weight, topk_iou=self.simota_topk_iou,
                )
                for c, o, b, t in zip(cls_logits, obj_logits, boxes, targets)
            ]
        )
        foreground = gt_index >= 0
        num_fg = max(1.0, float(foreground.sum()))
        # Boolean indexing is frame-major, cell-minor for every tensor below, so row j of each is
        # the j-th foreground cell.
        gt_boxes = torch.cat([t["boxes"].to(boxes)[i[f]] for t, i, f in zip(targets, gt_index, foreground)])
        iou = box_iou(boxes[foreground], gt_boxes).diagonal()
        losses = {
            "loss_yolox_cls": F.binary_cross_entropy_with_logits(
                cls_logits[foreground], iou.detach(), reduction="sum"
            ) / num_fg,
            "loss_yolox_obj": F.binary_cross_entropy_with_logits(
                obj_logits, foreground.to(obj_logits.dtype), reduction="sum"
            ) / num_fg,
            "loss_yolox_iou": self.iou_loss_weight * (1 - iou**2).sum() / num_fg,
        }
        if self.l1_loss:
            fg_cells = cells[foreground.nonzero()[:, 1]]
            losses["loss_yolox_l1"] = (raw[foreground] - self.l1_targets(gt_boxes, fg_cells)).abs().sum() / num_fg
        return losses


def _check_targets(targets: list[dict] | None, frames: int) -> None:
    """Raises ValueError unless ``targets`` holds one dict per frame with boxes of positive size."""
    if targets is None or len(targets) != frames:
        raise ValueError(f"YOLOX training needs one target dict per frame ({frames})")
    for t, target in enumerate(targets):
        boxes = target["boxes"]
        if ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
            raise ValueError(f"frame {t}: GT boxes need positive width and height (XYXY pixels), got {boxes.tolist()}")
