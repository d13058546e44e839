"""FGFA: the two-stage detector on flow-warped, adaptively weighted res4 maps (baselines spec 1.3;
Zhu et al., "Flow-Guided Feature Aggregation for Video Object Detection", ICCV 2017)."""

from __future__ import annotations

import torch
from torch import nn

from ultradet.config import ExperimentConfig
from ultradet.modeling.layers.fgfa import EmbedNet, aggregation_weights
from ultradet.modeling.layers.flow import build_flow
from ultradet.modeling.layers.warp import warp
from ultradet.modeling.lookahead import LookaheadWindow
from ultradet.modeling.meta_arch.temporal_rcnn import TemporalRCNN
from ultradet.modeling.registry import META_ARCHITECTURES


@META_ARCHITECTURES.register("fgfa")
class FGFARCNN(TemporalRCNN):
    """:class:`TemporalRCNN` whose proposal generator and RoI head see each frame's res4 map
    aggregated over a set of reference frames:

    1. each reference map is warped onto the current frame with the inverse flow current ->
       reference (:func:`warp`, bilinear, border padding; the current map itself is not warped);
    2. the current map and the warped maps are embedded by :class:`EmbedNet`;
    3. ``aggregated(p) = sum_r w_r(p) * map_r(p)`` with :func:`aggregation_weights` over the
       current frame and the references.

    Training: for every clip frame the references are all other clip frames (T - 1 flows per
    frame, both directions in time, as the original). Test: a :class:`LookaheadWindow` FIFO of
    the raw maps and images; causal (``interval_after_test = 0``), the references of frame ``t``
    are the ``interval_pre_test`` previous frames; with a bounded lookahead of ``k`` frames also
    frames ``t + 1 .. t + k`` (published FGFA's test window is two-sided), so frame ``t``'s map
    is aggregated, and detected, when frame ``t + k`` arrives (``infer_frame`` answers ``k``
    frames late; :meth:`flush_features` gives the last ``k`` maps with the later frames that exist).

    Temporal ablation (``aggregate_test=False``, test time only): the window is the current frame
    alone (no references, no lookahead), so the reference frames' warped maps are removed and
    the aggregated map is the frame's own (one weight, 1); the RoI head's own ablation applies too.

    Args:
        flow: an estimator of ``FLOW_ESTIMATORS`` (``flow(current, context, grid) -> (flow, scale)``;
            the DFF scale map of FlowNetS is not used: FGFA has no scale branch).
        feature_channels: channels of the backbone map (256).
        interval_pre_test: earlier frames aggregated at test time (15).
        interval_after_test: later frames aggregated at test time (0: causal).
        zero_flow: the original's behaviour, reference maps not warped (spec 1.3 "Bug").
        aggregate_test: False = the temporal ablation above (``model.temporal.aggregate_test``).
        **kwargs: see :class:`TemporalRCNN`.
    """

    def __init__(
        self,
        *,
        flow: nn.Module,
        feature_channels: int = 256,
        interval_pre_test: int = 15,
        interval_after_test: int = 0,
        zero_flow: bool = False,
        aggregate_test: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.flow = flow
        self.embed = EmbedNet(channels=feature_channels)
        self.interval_pre_test = interval_pre_test
        self.interval_after_test = interval_after_test
        self.zero_flow = zero_flow
        # (normalised image [1, 3, H, W], raw map [1, C, h, w]) of the buffered frames
        self.window: LookaheadWindow[tuple[torch.Tensor, torch.Tensor]] = LookaheadWindow(
            before=interval_pre_test if aggregate_test else 0, after=interval_after_test if aggregate_test else 0
        )

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "FGFARCNN":
        parts = cls.parts_from_config(cfg)
        window = cfg.model.temporal
        return cls(
            **parts,
            feature_channels=parts["backbone"].out_channels,
            flow=build_flow(cfg),
            interval_pre_test=window.interval_pre_test,
            interval_after_test=window.interval_after_test,
            zero_flow=cfg.model.fgfa.zero_flow,
            aggregate_test=window.aggregate_test,
        )

    @property
    def lookahead(self) -> int:
        """Frames an output is emitted late: FGFA's own window (``interval_after_test``) plus
        the RoI head's, if it has one."""
        return self.window.after + super().lookahead

    @property
    def temporal_aggregation(self) -> bool:
        """True: FGFA aggregates maps over frames."""
        return True

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

    def frame_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Buffer the current frame's raw map; return the aggregated map of the frame
        ``interval_after_test`` frames back with its images, None while it waits."""
        self.window.append((images, self.backbone(images)))
        ready = self.window.pop_ready()
        return None if ready is None else self._aggregate_window(*ready)

    def flush_features(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [self._aggregate_window(frames, index) for frames, index in self.window.drain()]

    def _aggregate_window(self, frames: list[tuple[torch.Tensor, torch.Tensor]], index: int):
        """``(aggregated map, images)`` of ``frames[index]`` with the other frames of its window
        as references (earlier ones first, in frame order)."""
        images, features = frames[index]
        references = frames[:index] + frames[index + 1 :]
        ref_images = torch.cat([images[:0]] + [i for i, _ in references])
        ref_features = torch.cat([features[:0]] + [f for _, f in references])
        return self.aggregate(images, features, ref_images, ref_features), images

    def reset(self) -> None:
        super().reset()
        self.window.clear()
