"""CVA-Net as the original builds it (baselines spec 3.3, ``meta_arch/cva_net.py:16-175``):
Deformable DETR on the channel-pair fusion of a frame's backbone map with an earlier frame's."""

from __future__ import annotations

import torch

from ultradet.config import ExperimentConfig
from ultradet.modeling.layers.channel_fuse import channel_pair_fuse
from ultradet.modeling.meta_arch.detr import Predictions
from ultradet.modeling.meta_arch.video_detr import VideoSetPredictionDetector
from ultradet.modeling.registry import META_ARCHITECTURES


@META_ARCHITECTURES.register("cva_net")
class CVANet(VideoSetPredictionDetector):
    """Deformable DETR (baselines spec 3.1) on ``channel_pair_fuse(earlier map, current map)``.

    Training (``:44-82``): a clip of ``2M`` frames from the memory sampler, ``M`` sorted memory
    frames then ``M`` sorted local frames (``sampler.memory_frames = sampler.num_out_frames``,
    which the config enforces, as the original asserts at ``:23``); the backbone runs on all of
    them, the i-th memory map is fused with the i-th local map, and the transformer and heads run
    on the ``M`` fused maps, supervised by the local frames' boxes. A clip of odd length (only
    outside the memory sampler, e.g. a test's 3-frame clip) pairs its first ``T // 2`` frames
    with its last ``T // 2``; its middle frame is unused.

    Test (``:61-65, 84-87``): the window buffers each frame's raw backbone map
    ``FloatTensor[1, C, h, w]``; frame t is predicted from ``channel_pair_fuse(map of frame t -
    partner_offset, map of frame t)``, the partner clamped to the oldest frame of t's window
    (frames ``t - interval_pre_test .. t + interval_after_test``). The original: a FIFO of 16 maps
    and partner t-8; with a bounded lookahead the partner stays before t, so the later frames of
    the window are waited for but unused. Temporal ablation (``aggregate_test: false``): the
    window is the frame alone, which is fused with itself. Outputs: :meth:`select`'s detections
    (XYXY pixels); inside, boxes are normalised cxcywh.

    Bug fixed: the original's ``CVANet`` has no ``reset`` and the inherited one is a no-op
    (``deformable_detr.py:395-399``), so the first 8 frames of a video fuse with the previous
    video's maps; here :meth:`reset` empties the window.

    Deviation kept (the row as the original builds it): published CVA-Net's attention-based fusion
    of clip-level and video-level features is absent; ``channel_pair_fuse`` is the only
    cross-frame operation.

    Args:
        partner_offset: frames between a test frame and its fusion partner (``model.cva_net``, 8).
        **kwargs: see :class:`VideoSetPredictionDetector`.
    """

    def __init__(self, *, partner_offset: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.partner_offset = partner_offset

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "CVANet":
        return cls(
            **cls.deformable_parts(cfg), **cls.window_from_config(cfg), partner_offset=cfg.model.cva_net.partner_offset
        )

    def predict_clip(self, features: torch.Tensor) -> tuple[Predictions, list[int]]:
        """Per decoder layer the predictions ``[M, Q, ...]`` of the ``M = T // 2`` local frames
        (the clip's last ``M``), each from its fusion with the memory frame of the same rank (the
        clip's first ``M``), for the clip's maps ``FloatTensor[T, C, h, w]``.

        Raises:
            ValueError: a clip of fewer than 2 frames (no pair).
        """
        pairs = len(features) // 2
        if pairs < 1:
            raise ValueError(f"cva_net trains on pairs of memory and local frames; a {len(features)}-frame clip has none")
        local = range(len(features) - pairs, len(features))
        return self.predict(channel_pair_fuse(features[:pairs], features[local.start :])), list(local)

    def frame_item(self, features: torch.Tensor) -> torch.Tensor:
        """The frame's raw backbone map ``FloatTensor[1, C, h, w]`` (fused only when it is used)."""
        return features

    def predict_window(self, items: list[torch.Tensor], index: int) -> Predictions:
        """Per decoder layer the predictions ``[1, Q, ...]`` of frame ``items[index]`` from its
        fusion with the map ``partner_offset`` frames before it, or the window's oldest."""
        partner = items[max(0, index - self.partner_offset)]
        return self.predict(channel_pair_fuse(partner, items[index]))
