"""The part every RoI head shares (spec section 3.4): RoI sampling, the RoI feature extractor,
the Fast R-CNN predictor, its losses and its inference. Subclasses decide how RoI vectors of
different frames interact (not at all, relation, relation + NTCA)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.detection._utils import BoxCoder

from ultradet.config import ExperimentConfig
from ultradet.modeling.layers.res5 import RoIBoxEncoder
from ultradet.modeling.roi_heads.fast_rcnn import FastRCNNPredictor, fast_rcnn_inference, fast_rcnn_losses
from ultradet.modeling.roi_heads.sampling import RoISampler, SampledRoIs


class Res5ROIHeads(nn.Module):
    """Base class: see the module docstring. Keyword-only arguments, names as in
    :class:`ultradet.config.ROIHeadsConfig`.

    Args:
        in_channels: channels of the backbone map (ResNet-18/34 res4: 256). stride: its stride in
            pixels (16). ``from_config`` takes both from the backbone.
        d_model: RoI vector size (256). pooler_resolution: RoIAlign bins (14).
        norm: res5 normalisation, ``"frozen_bn"`` or ``"bn"``.
        batch_size_per_image, positive_fraction, fg_iou_thresh: training RoI sampling.
        bbox_reg_weights: ``(wx, wy, ww, wh)`` of the box coder, (10, 10, 5, 5).
        score_thresh_test, nms_thresh_test, detections_per_image: inference.

    ``temporal_aggregation`` (class attribute): whether the head aggregates RoIs over frames at
    test time, i.e. whether ``model.temporal.aggregate_test`` changes it; False here.
    """

    temporal_aggregation = False

    def __init__(
        self,
        *,
        in_channels: int = 256,
        stride: int = 16,
        d_model: int = 256,
        pooler_resolution: int = 14,
        norm: str = "frozen_bn",
        batch_size_per_image: int = 16,
        positive_fraction: float = 0.5,
        fg_iou_thresh: float = 0.5,
        bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh_test: float = 0.0,
        nms_thresh_test: float = 0.5,
        detections_per_image: int = 100,
    ):
        super().__init__()
        self.d_model = d_model
        self.box_encoder = RoIBoxEncoder(
            in_channels=in_channels,
            out_channels=d_model,
            stride=stride,
            pooler_resolution=pooler_resolution,
            norm=norm,
        )
        self.predictor = FastRCNNPredictor(d_model=d_model)
        self.box_coder = BoxCoder(tuple(bbox_reg_weights))
        self.sampler = RoISampler(
            batch_size_per_image=batch_size_per_image,
            positive_fraction=positive_fraction,
            fg_iou_thresh=fg_iou_thresh,
            box_coder=self.box_coder,
        )
        self.score_thresh_test = score_thresh_test
        self.nms_thresh_test = nms_thresh_test
        self.detections_per_image = detections_per_image

    @classmethod
    def config_kwargs(cls, cfg: ExperimentConfig) -> dict[str, Any]:
        """Constructor arguments from ``cfg.model.roi_heads`` (+ the backbone norm); subclasses
        extend it with their own."""
        rh = cfg.model.roi_heads
        return dict(
            d_model=rh.d_model,
            pooler_resolution=rh.pooler_resolution,
            norm=cfg.model.backbone.norm,
            batch_size_per_image=rh.batch_size_per_image,
            positive_fraction=rh.positive_fraction,
            fg_iou_thresh=rh.fg_iou_thresh,
            bbox_reg_weights=rh.bbox_reg_weights,
            score_thresh_test=rh.score_thresh_test,
            nms_thresh_test=rh.nms_thresh_test,
            detections_per_image=rh.detections_per_image,
        )

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, *, in_channels: int, stride: int) -> "Res5ROIHeads":
        """The head of ``cfg`` over a backbone map of ``in_channels`` channels and ``stride``
        pixels (detectron2's ``from_config(cfg, input_shape)``)."""
        return cls(**cls.config_kwargs(cfg), in_channels=in_channels, stride=stride)

    # ------------------------------------------------------------------ shared steps
    def losses(self, x: torch.Tensor, sampled: list[SampledRoIs]) -> dict[str, torch.Tensor]:
        """Fast R-CNN losses of RoI vectors ``x`` (``FloatTensor[sum R_t, d_model]``, rows in the
        frame-major order of ``sampled``)."""
        logits, deltas = self.predictor(x)
        labels = torch.cat([s.labels for s in sampled])
        targets = torch.cat([s.regression_targets for s in sampled]).to(deltas.dtype)
        return fast_rcnn_losses(logits, deltas, labels, targets)

    def predict(self, x: torch.Tensor, proposals: torch.Tensor, image_size: tuple[int, int]) -> dict:
        """Detections from RoI vectors ``x`` (``[P, d_model]``) of ``proposals`` (``[P, 4]`` XYXY
        pixels) of one frame of size ``image_size = (H, W)``; see :func:`fast_rcnn_inference`."""
        logits, deltas = self.predictor(x)
        return fast_rcnn_inference(
            logits,
            deltas,
            proposals,
            image_size,
            box_coder=self.box_coder,
            score_thresh=self.score_thresh_test,
            nms_thresh=self.nms_thresh_test,
            detections_per_image=self.detections_per_image,
        )

    @property
    def lookahead(self) -> int:
        """Frames an output is emitted late (bounded lookahead); heads that answer every frame
        at once: 0."""
        return 0

    def reset(self) -> None:
        """Forget the current video (clear test-time buffers). Stateless heads do nothing."""

    def flush(self) -> list[dict]:
        """Detections still owed at the end of a video (bounded lookahead, see
        :class:`ultradet.modeling.roi_heads.relation.RelationROIHeads`); heads that answer every
        frame at once owe none: ``[]``."""
        return []
