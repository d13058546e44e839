"""One-stage detectors: backbone -> dense head, whose per-frame detections are the output
(baselines spec section 2: the original's ``TemporalProposalNetwork`` for FCOS, YOLOX and DeFCN,
``SingleFrameRetinaNet`` for RetinaNet), and the same followed by a tracker
(``TrackTemporalProposalNetwork``, the Track-YOLO row)."""

from __future__ import annotations

import torch
from torch import nn

from ultradet.config import ExperimentConfig
from ultradet.modeling.backbone import build_backbone
from ultradet.modeling.dense_heads import build_dense_head
from ultradet.modeling.meta_arch.base import VideoDetector
from ultradet.modeling.registry import META_ARCHITECTURES
from ultradet.modeling.tracking import build_tracker


@META_ARCHITECTURES.register("one_stage")
class OneStageDetector(VideoDetector):
    """Every frame detected on its own by a dense head (``DENSE_HEADS``: ``poto`` (DeFCN),
    ``retinanet``, ``fcos``, ``yolox``); no state between frames.

    Args:
        backbone: ``FloatTensor[T, 3, H, W] -> FloatTensor[T, C, h, w]`` (normalised input).
        dense_head: ``head(features [T, C, h, w], image_size (H, W), targets=None) ->
            (detections, losses)`` with ``detections`` a list of T dicts ``{"boxes":
            FloatTensor[N, 4] (XYXY input pixels), "scores": FloatTensor[N]}`` and ``losses`` a
            dict of named scalars (empty at test), ``docs/architecture.md``.
        pixel_mean, pixel_std: RGB normalisation, in 0..255 units.
    """

    def __init__(self, *, dense_head: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.dense_head = dense_head

    @classmethod
    def parts_from_config(cls, cfg: ExperimentConfig) -> dict:
        """Backbone and dense head of ``cfg.model`` and the normalisation."""
        backbone = build_backbone(cfg)
        return dict(
            backbone=backbone,
            dense_head=build_dense_head(cfg, in_channels=backbone.out_channels, stride=backbone.stride),
            pixel_mean=cfg.model.pixel_mean,
            pixel_std=cfg.model.pixel_std,
        )

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "OneStageDetector":
        return cls(**cls.parts_from_config(cfg))

    def clip_losses(self, clip: dict) -> dict[str, torch.Tensor]:
        """The dense head's losses on the clip's frames, each frame an independent image."""
        images = self.normalise(clip["images"])
        targets = self.clip_targets(clip, images.device)
        _, losses = self.dense_head(self.backbone(images), tuple(images.shape[-2:]), targets)
        return losses

    def detect(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        detections, _ = self.dense_head(self.backbone(images), tuple(images.shape[-2:]))
        boxes = detections[0]["boxes"]
        labels = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
        return {"boxes": boxes, "scores": detections[0]["scores"], "labels": labels}


@META_ARCHITECTURES.register("track_one_stage")
class TrackingOneStageDetector(OneStageDetector):
    """:class:`OneStageDetector` whose detections of each frame, mapped to the original frame,
    pass through a tracker that keeps state across the frames of a video (baselines spec 2.4:
    the Track-YOLO row is YOLOX followed by the original's ``CacheTracker``). Training is the
    dense head's; the tracker has no parameters. Causal: frame ``t``'s output depends on frames
    ``<= t`` only; :meth:`reset` clears the tracks.

    Args:
        tracker: ``tracker.update(detections) -> detections`` on one frame's ``{"boxes"
            (XYXY original-frame pixels), "scores", "labels"}``, and ``tracker.reset()``.
        **kwargs: see :class:`OneStageDetector`.
    """

    def __init__(self, *, tracker, **kwargs):
        super().__init__(**kwargs)
        self.tracker = tracker

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "TrackingOneStageDetector":
        return cls(**cls.parts_from_config(cfg), tracker=build_tracker(cfg))

    def reset(self) -> None:
        """Start a new video: drop every track."""
        self.tracker.reset()
        super().reset()

    @torch.no_grad()
    def infer_frame(self, image: torch.Tensor, original_size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """As :meth:`VideoDetector.infer_frame`, then tracked: the original runs its tracker on
        boxes in original-frame pixels (its process noise is set from the first box's size in
        pixels, baselines spec 2.4)."""
        return self.tracker.update(super().infer_frame(image, original_size))
