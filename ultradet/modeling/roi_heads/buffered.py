"""Test-time FIFO shared by the temporal RoI heads (BasicDet relation, SELSA, MEGA, UltraDet's
NTCA): causal online inference, or with a bounded lookahead; and their shared clip training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ultradet.config import ExperimentConfig
from ultradet.modeling.lookahead import LookaheadWindow
from ultradet.modeling.roi_heads.base import Res5ROIHeads


@dataclass
class BufferedFrame:
    """What the test-time FIFO keeps of one frame: ``boxes`` (``FloatTensor[P, 4]``, XYXY pixels),
    their RoI vectors (``FloatTensor[P, d_model]``, pooled once, never recomputed) and the
    frame's ``image_size`` ``(H, W)`` (to clip its detections when it is finally classified)."""

    boxes: torch.Tensor
    vectors: torch.Tensor
    image_size: tuple[int, int]


def tokens_of(frames: list[BufferedFrame]) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame-major concatenation of ``frames``' RoIs: vectors ``[N, d_model]`` and boxes
    ``[N, 4]`` (XYXY input pixels), rows as in :func:`rows_of`."""
    return torch.cat([f.vectors for f in frames]), torch.cat([f.boxes for f in frames])


def rows_of(frames: list[BufferedFrame], index: int) -> slice:
    """The rows of ``frames[index]``'s RoIs in the frame-major concatenation of ``frames``' RoIs."""
    start = sum(len(f.boxes) for f in frames[:index])
    return slice(start, start + len(frames[index].boxes))


class BufferedROIHeads(Res5ROIHeads):
    """Base class: a :class:`LookaheadWindow` FIFO of the frames' RoI vectors, each pooled once;
    :meth:`aggregate_window` (the subclass's temporal module) runs over the buffered RoIs of the
    classified frame's window and only that frame's RoIs are classified.

    Causal (``interval_after_test = 0``): the window is the current frame and the
    ``interval_pre_test`` earlier ones. Bounded lookahead (``interval_after_test = k > 0``, the
    original's ``INTERVAL_AFTER_TEST``, whose FIFO holds ``INTERVAL_PRE_TEST +
    INTERVAL_AFTER_TEST + 1`` frames): frame ``t`` is classified with frames
    ``t - interval_pre_test .. t + k`` when frame ``t + k`` arrives (:meth:`forward_frame`
    returns None for the first ``k`` frames of a video), and :meth:`flush` classifies the last
    ``k`` frames at the end of the video with the later frames that exist.

    Temporal ablation (``aggregate_test=False``, test time only): the window is the classified
    frame alone (``before = after = 0``: no lookahead either), so :meth:`aggregate_window` runs
    over that frame's ``P`` RoIs only; the RoI vectors and boxes of every other frame are
    removed. Subclasses remove what else they aggregate over time (MEGA's memory, NTCA's
    context).

    Training (:meth:`forward_train`): the sampled RoIs of all T clip frames are one token set
    for :meth:`aggregate` (not causal, as in the original); GT-appended boxes are queries but
    not keys; losses on every frame.

    Args:
        interval_pre_test: earlier frames kept at test time (15).
        interval_after_test: later frames waited for at test time (0).
        aggregate_test: False = the temporal ablation above (``model.temporal.aggregate_test``).
        **kwargs: see :class:`Res5ROIHeads`.
    """

    frame_type: type[BufferedFrame] = BufferedFrame  # what the FIFO keeps per frame (subclasses keep more)
    temporal_aggregation = True

    def __init__(
        self, *, interval_pre_test: int = 15, interval_after_test: int = 0, aggregate_test: bool = True, **kwargs
    ):
        super().__init__(**kwargs)
        self.interval_pre_test = interval_pre_test
        self.interval_after_test = interval_after_test
        self.aggregate_test = aggregate_test
        self.history: LookaheadWindow[BufferedFrame] = LookaheadWindow(
            before=interval_pre_test if aggregate_test else 0, after=interval_after_test if aggregate_test else 0
        )

    @classmethod
    def config_kwargs(cls, cfg: ExperimentConfig) -> dict[str, Any]:
        window = cfg.model.temporal
        return {
            **super().config_kwargs(cfg),
            "interval_pre_test": window.interval_pre_test,
            "interval_after_test": window.interval_after_test,
            "aggregate_test": window.aggregate_test,
        }

    def aggregate(
        self,
        x: torch.Tensor,
        boxes: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        queries: slice | None = None,
    ) -> torch.Tensor:
        """The temporal module: ``x`` ``[N, d_model]`` tokens with their ``boxes`` ``[N, 4]``;
        ``key_mask`` ``BoolTensor[N]`` (False = never attended to; None = all); returns the
        updated ``[Q, d_model]`` rows ``queries`` (``Q = N`` without ``queries``)."""
        raise NotImplementedError

    def aggregate_window(self, frames: list[BufferedFrame], index: int) -> torch.Tensor:
        """Test-time aggregation over the window (``frames``, oldest first) of the classified
        frame ``frames[index]``; called once per classified frame, in frame order. Returns that
        frame's ``[P, d_model]`` rows."""
        tokens, boxes = tokens_of(frames)
        return self.aggregate(tokens, boxes, queries=rows_of(frames, index))

    def forward_train(
        self, features: torch.Tensor, proposals: list[dict], targets: list[dict], images: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Losses of one clip; arguments as in :meth:`SingleFrameROIHeads.forward_train`
        (``images`` unused). Returns ``{"loss_cls", "loss_box_reg"}``."""
        sampled = self.sampler(proposals, targets)
        x = self.box_encoder(features, [s.boxes for s in sampled])
        boxes = torch.cat([s.boxes for s in sampled])
        is_gt = torch.cat([s.is_gt for s in sampled])
        return self.losses(self.aggregate(x, boxes, key_mask=~is_gt), sampled)

    @property
    def lookahead(self) -> int:
        """``interval_after_test`` (0 in the temporal ablation): frame ``t`` is answered when
        frame ``t + k`` arrives."""
        return self.history.after

    def reset(self) -> None:
        self.history.clear()

    def buffer(self, features: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor) -> None:
        """Append the current frame to the FIFO (its RoI vectors pooled once); heads that keep
        more per frame extend it. Arguments as :meth:`forward_frame` (``boxes``: its proposals)."""
        vectors = self.box_encoder(features, [boxes]).detach()
        self.history.append(self.frame_type(boxes, vectors, tuple(image.shape[-2:])))

    def forward_frame(self, features: torch.Tensor, proposals: dict, image: torch.Tensor) -> dict | None:
        """Buffer the current frame and classify the frame ``interval_after_test`` frames back.

        Per call: RoIAlign + res5 for the current ``P`` proposals only (earlier frames' vectors are
        cached), one :meth:`aggregate_window` pass over the ``<= (interval_pre_test +
        interval_after_test + 1) * P`` buffered tokens.

        Args: as :meth:`SingleFrameROIHeads.forward_frame`.

        Returns:
            As :meth:`SingleFrameROIHeads.forward_frame`, for the frame ``interval_after_test``
            frames before the current one; None while fewer frames have been seen.
        """
        self.buffer(features, proposals["boxes"], image)
        ready = self.history.pop_ready()
        return None if ready is None else self._classify(*ready)

    def flush(self) -> list[dict]:
        """Detections of the frames still waiting for their lookahead at the end of a video
        (``<= interval_after_test``, oldest first)."""
        return [self._classify(frames, index) for frames, index in self.history.drain()]

    def _classify(self, frames: list[BufferedFrame], index: int) -> dict:
        query = frames[index]
        return self.predict(self.aggregate_window(frames, index), query.boxes, query.image_size)
