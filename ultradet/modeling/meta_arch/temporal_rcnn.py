"""The two-stage video detector shared by Faster R-CNN, the Faster R-CNN-based video baselines,
BasicDet and UltraDet (spec section 3.1, ``TemporalRCNN``): normalise -> ResNet C4 backbone ->
proposal generator -> RoI head.

Training runs on whole clips; inference is online, one frame at a time, causal by default: all
temporal state lives in the RoI head's buffers, filled only by frames already seen. With a
bounded lookahead of ``k`` frames (``interval_after_test``) each output is emitted ``k`` frames
late and :meth:`TemporalRCNN.flush` emits the last ``k`` at the end of a video.
"""

from __future__ import annotations

import torch
from torch import nn

from ultradet.config import ExperimentConfig
from ultradet.modeling.backbone import build_backbone
from ultradet.modeling.meta_arch.base import VideoDetector
from ultradet.modeling.proposal_generator import build_proposal_generator
from ultradet.modeling.registry import META_ARCHITECTURES
from ultradet.modeling.roi_heads import build_roi_heads


@META_ARCHITECTURES.register("temporal_rcnn")
class TemporalRCNN(VideoDetector):
    """
    Args:
        backbone: ``FloatTensor[T, 3, H, W] -> FloatTensor[T, C, h, w]`` (normalised input).
        proposal_generator: see ``docs/architecture.md`` (``rpn`` / ``poto``).
        roi_heads: see ``docs/architecture.md`` (``single_frame`` / ``relation`` / ``ntca`` ...).
        pixel_mean, pixel_std: RGB normalisation, in 0..255 units.
    """

    def __init__(self, *, proposal_generator: nn.Module, roi_heads: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads

    @classmethod
    def parts_from_config(cls, cfg: ExperimentConfig) -> dict:
        """Backbone, proposal generator and RoI head of ``cfg.model`` (built in that order, so
        a seed gives the same initial weights whatever the meta-architecture adds after them)
        and the normalisation."""
        backbone = build_backbone(cfg)
        shape = dict(in_channels=backbone.out_channels, stride=backbone.stride)
        return dict(
            backbone=backbone,
            proposal_generator=build_proposal_generator(cfg, **shape),
            roi_heads=build_roi_heads(cfg, **shape),
            pixel_mean=cfg.model.pixel_mean,
            pixel_std=cfg.model.pixel_std,
        )

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "TemporalRCNN":
        return cls(**cls.parts_from_config(cfg))

    # ------------------------------------------------------------------ training
    def clip_losses(self, clip: dict) -> dict[str, torch.Tensor]:
        """The proposal generator's losses and the RoI head's ``loss_cls``, ``loss_box_reg``."""
        images = self.normalise(clip["images"])
        targets = self.clip_targets(clip, images.device)
        features = self.clip_features(images)
        proposals, losses = self.proposal_generator(features, tuple(images.shape[-2:]), targets)
        losses.update(self.roi_heads.forward_train(features, proposals, targets, images))
        return losses

    def clip_features(self, images: torch.Tensor) -> torch.Tensor:
        """Training feature maps of a normalised clip ``[T, 3, H, W]`` -> ``[T, C, h, w]`` (the
        backbone's; meta-architectures that aggregate maps across frames override it)."""
        return self.backbone(images)

    def frame_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Test feature map of the next frame ready for detection, given the current normalised
        frame ``[1, 3, H, W]``: ``(features [1, C, h, w], that frame's images [1, 3, H, W])``;
        here the current frame's backbone map. Meta-architectures that aggregate maps across
        frames override it (and may answer a frame later, None while they wait: see
        :meth:`flush_features`)."""
        return self.backbone(images), images

    def flush_features(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """At the end of a video, the ``(features, images)`` that :meth:`frame_features` still
        owes, oldest first (none here)."""
        return []

    @property
    def lookahead(self) -> int:
        """Frames an output is emitted late (the RoI head's ``lookahead``; 0 = causal)."""
        return self.roi_heads.lookahead

    @property
    def temporal_aggregation(self) -> bool:
        """Whether the RoI head aggregates over frames (its ``temporal_aggregation``)."""
        return self.roi_heads.temporal_aggregation

    # ------------------------------------------------------------------ online inference
    def reset(self) -> None:
        """Start a new video: clear the RoI head's buffers and the owed frames."""
        self.roi_heads.reset()
        super().reset()

    def detect(self, images: torch.Tensor) -> dict | None:
        ready = self.frame_features(images)
        return None if ready is None else self._detect(*ready)

    def flush_detections(self) -> list[dict]:
        outputs = [self._detect(*ready) for ready in self.flush_features()]
        return [output for output in outputs if output is not None] + self.roi_heads.flush()

    def _detect(self, features: torch.Tensor, images: torch.Tensor) -> dict | None:
        """Proposals + RoI head on one frame's map ``[1, C, h, w]`` (normalised ``images``
        ``[1, 3, H, W]``): its detections in input pixels, or None while the head waits."""
        proposals, _ = self.proposal_generator(features, tuple(images.shape[-2:]))
        return self.roi_heads.forward_frame(features, proposals[0], images)
