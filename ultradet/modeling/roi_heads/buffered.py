"""Test-time FIFO shared by the heads whose frames interact through their RoI vectors only
(BasicDet relation, SELSA, RelationNet): causal online inference, or with a bounded lookahead."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from ultradet.config import ExperimentConfig
from ultradet.modeling.roi_heads.base import Res5ROIHeads


@dataclass
class BufferedFrame:
    """What the test-time FIFO keeps of one frame: ``boxes`` (``FloatTensor[P, 4]``, XYXY pixels),
    their RoI vectors (``FloatTensor[P, d_model]``, pooled once, never recomputed) and the
    frame's ``image_size`` ``(H, W)`` (to clip its detections when it is finally classified)."""

    boxes: torch.Tensor
    vectors: torch.Tensor
    image_size: tuple[int, int]


class BufferedROIHeads(Res5ROIHeads):
    """Base class: a FIFO of the last ``interval_pre_test`` frames plus the current one; each
    frame's RoI vectors are pooled once; :meth:`aggregate` (the subclass's temporal module) runs
    over all buffered RoIs and only the classified frame's RoIs are classified.

    Bounded lookahead (``interval_after_test = k > 0``, the original's ``INTERVAL_AFTER_TEST``,
    whose FIFO holds ``INTERVAL_PRE_TEST + INTERVAL_AFTER_TEST + 1`` frames): the FIFO also holds
    the ``k`` frames after the classified one, so frame ``t`` is classified with frames
    ``t - interval_pre_test .. t + k`` when frame ``t + k`` arrives (:meth:`forward_frame`
    returns None for the first ``k`` frames of a video), and :meth:`flush` classifies the last
    ``k`` frames at the end of the video with the later frames that exist. ``k = 0`` is causal.

    Args:
        interval_pre_test: earlier frames kept at test time (15).
        interval_after_test: later frames waited for at test time (0).
        **kwargs: see :class:`Res5ROIHeads`.
    """

    def __init__(self, *, interval_pre_test: int = 15, interval_after_test: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.interval_pre_test = interval_pre_test
        self.interval_after_test = interval_after_test
        self.history: deque[BufferedFrame] = deque(maxlen=interval_pre_test + interval_after_test + 1)
        self.pending = 0  # buffered frames not classified yet (<= interval_after_test)

    @classmethod
    def config_kwargs(cls, cfg: ExperimentConfig) -> dict[str, Any]:
        rh = cfg.model.roi_heads
        return {
            **super().config_kwargs(cfg),
            "interval_pre_test": rh.interval_pre_test,
            "interval_after_test": rh.interval_after_test,
        }

    def aggregate(self, x: torch.Tensor, boxes: torch.Tensor, queries: slice) -> torch.Tensor:
        """Test-time temporal aggregation: ``x`` ``[N, d_model]`` tokens of the buffered frames
        with their ``boxes`` ``[N, 4]``; returns the updated ``[Q, d_model]`` rows ``queries``."""
        raise NotImplementedError

    def reset(self) -> None:
        self.history.clear()
        self.pending = 0

    def forward_frame(self, features: torch.Tensor, proposals: dict, image: torch.Tensor) -> dict | None:
        """Buffer the current frame and classify the frame ``interval_after_test`` frames back.

        Per call: RoIAlign + res5 for the current ``P`` proposals only (earlier frames' vectors are
        cached), one :meth:`aggregate` pass over the ``<= (interval_pre_test +
        interval_after_test + 1) * P`` buffered tokens.

        Args: as :meth:`SingleFrameROIHeads.forward_frame`.

        Returns:
            As :meth:`SingleFrameROIHeads.forward_frame`, for the frame ``interval_after_test``
            frames before the current one; None while fewer frames have been seen.
        """
        boxes = proposals["boxes"]
        vectors = self.box_encoder(features, [boxes]).detach()
        self.history.append(BufferedFrame(boxes, vectors, tuple(image.shape[-2:])))
        self.pending += 1
        if self.pending <= self.interval_after_test:
            return None
        return self._classify_oldest_pending()

    def flush(self) -> list[dict]:
        """Detections of the frames still waiting for their lookahead at the end of a video
        (``<= interval_after_test``, oldest first)."""
        return [self._classify_oldest_pending() for _ in range(self.pending)]

    def _classify_oldest_pending(self) -> dict:
        position = len(self.history) - self.pending
        first = max(0, position - self.interval_pre_test)
        frames = list(self.history)[first:]
        query = frames[position - first]
        start = sum(len(f.boxes) for f in frames[: position - first])
        tokens = torch.cat([f.vectors for f in frames])
        x = self.aggregate(tokens, torch.cat([f.boxes for f in frames]), slice(start, start + len(query.boxes)))
        self.pending -= 1
        return self.predict(x, query.boxes, query.image_size)
