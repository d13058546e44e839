"""FGFA: the two-stage detector on flow-warped, adaptively weighted res4 maps (baselines spec 1.3;
Zhu et al., "Flow-Guided Feature Aggregation for Video Object Detection", ICCV 2017)."""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from torch import nn

from ultradet.config import ExperimentConfig
from ultradet.modeling.layers.fgfa import EmbedNet, aggregation_weights
from ultradet.modeling.layers.flow import build_flow
from ultradet.modeling.layers.warp import warp
from ultradet.modeling.meta_arch import TemporalRCNN


class FGFARCNN(TemporalRCNN):
    """:class:`TemporalRCNN` whose proposal generator and RoI head see each frame's res4 map
    aggregated over a set of reference frames:

    1. each reference map is warped onto the current frame with the inverse flow current ->
       reference (:func:`warp`, bilinear, border padding; the current map itself is not warped);
    2. the current map and the warped maps are embedded by :class:`EmbedNet`;
    3. ``aggregated(p) = sum_r w_r(p) * map_r(p)`` with :func:`aggregation_weights` over the
       current frame and the references.

    Training: for every clip frame the references are all other clip frames (T - 1 flows per
    frame, both directions in time, as the original). Test (causal): the references are the
    ``interval_pre_test`` previous frames of the video (a FIFO of their raw maps and images).

    Args:
        flow: an estimator of ``FLOW_ESTIMATORS`` (``flow(current, context, grid) -> (flow, scale)``;
            the DFF scale map of FlowNetS is not used: FGFA has no scale branch).
        feature_channels: channels of the backbone map (256).
        interval_pre_test: earlier frames aggregated at test time (15).
        zero_flow: the original's behaviour, reference maps not warped (spec 1.3 "Bug").
        **kwargs: see :class:`TemporalRCNN`.
    """

    def __init__(
        self,
        *,
        flow: nn.Module,
        feature_channels: int = 256,
        interval_pre_test: int = 15,
        zero_flow: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.flow = flow
        self.embed = EmbedNet(channels=feature_channels)
        self.interval_pre_test = interval_pre_test
        self.zero_flow = zero_flow
        self.references: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=interval_pre_test)

    @classmethod
    def config_kwargs(cls, cfg: ExperimentConfig) -> dict[str, Any]:
        """FGFA's own constructor arguments (the shared ones come from ``build_model``).

        Raises:
            ValueError: ``model.roi_heads.interval_after_test > 0`` (FGFA here is causal only).
        """
        rh = cfg.model.roi_heads
        if rh.interval_after_test:
            raise ValueError(
                f"fgfa is causal only: model.roi_heads.interval_after_test must be 0, got {rh.interval_after_test}"
            )
        return {"flow": build_flow(cfg), "interval_pre_test": rh.interval_pre_test, "zero_flow": cfg.model.fgfa.zero_flow}

    def aggregate(
        self, image: torch.Tensor, features: torch.Tensor, ref_images: torch.Tensor, ref_features: torch.Tensor
    ) -> torch.Tensor:
        """The aggregated map of one frame.

        Args:
            image: ``FloatTensor[1, 3, H, W]`` normalised current frame; features: its ``[1, C, h, w]``.
            ref_images: ``FloatTensor[R, 3, H, W]``; ref_features: ``FloatTensor[R, C, h, w]``; R may be 0.

        Returns:
            ``FloatTensor[1, C, h, w]``.
        """
        if len(ref_features) and not self.zero_flow:
            flow, _ = self.flow(image.expand(len(ref_images), -1, -1, -1), ref_images, tuple(features.shape[-2:]))
            ref_features = warp(ref_features, flow)
        maps = torch.cat([features, ref_features])
        embeddings = self.embed(maps)
        weights = aggregation_weights(embeddings[0], embeddings)  # [1 + R, h, w]
        return (weights[:, None] * maps).sum(dim=0, keepdim=True)

    def clip_features(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        frames = range(len(images))
        return torch.cat(
            [
                self.aggregate(
                    images[t : t + 1],
                    features[t : t + 1],
                    images[[r for r in frames if r != t]],
                    features[[r for r in frames if r != t]],
                )
                for t in frames
            ]
        )

    def frame_features(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        if self.references:
            ref_images = torch.cat([i for i, _ in self.references])
            ref_features = torch.cat([f for _, f in self.references])
        else:
            ref_images, ref_features = images[:0], features[:0]
        aggregated = self.aggregate(images, features, ref_images, ref_features)
        self.references.append((images, features))
        return aggregated

    def reset(self) -> None:
        super().reset()
        self.references.clear()
