"""The plumbing the video DETRs share (TransVOD, CVA-Net, PTSEFormer; baselines spec 3.2-3.4):
Deformable DETR's parts, a whole clip as one temporal set in training, and online inference over
a :class:`LookaheadWindow` of per-frame items that ``reset()`` clears."""

from __future__ import annotations

from typing import Any

import torch

from ultradet.config import ExperimentConfig
from ultradet.modeling.lookahead import LookaheadWindow
from ultradet.modeling.meta_arch.detr import DeformableDETR, Predictions


class VideoSetPredictionDetector(DeformableDETR):
    """Deformable DETR whose frames see each other (the base of the video DETRs).

    A subclass implements three steps:

    - :meth:`predict_clip` (training): the per-decoder-layer predictions of a clip's frames,
      computed with the clip as one temporal set (each clip alone, whatever the number of clips
      per worker: the original's mixing of all clips on a GPU is a Bug, baselines spec 0), and
      which clip frames they supervise;
    - :meth:`frame_item` (test): what the test buffer keeps of a frame (a map, an encoder memory,
      decoder states), computed once per frame;
    - :meth:`predict_window` (test): the predictions of one buffered frame from its window.

    Test: causal by default; the window of frame ``t`` holds frames ``t - interval_pre_test ..
    t + interval_after_test`` (a bounded lookahead answers ``interval_after_test`` frames late).
    :meth:`reset` empties the buffer, so no frame of one video reaches the next (the original's
    CVA-Net and PTSEFormer never reset theirs: a Bug, baselines spec 3.3-3.4). Temporal ablation
    (``aggregate_test=False``): the window is the frame alone.

    Args:
        interval_pre_test: earlier frames in a test window (the original's FIFO of 16 frames: 15).
        interval_after_test: later frames waited for (0: causal).
        aggregate_test: False = the temporal ablation above (``model.temporal.aggregate_test``).
        **kwargs: see :class:`DeformableDETR`.
    """

    def __init__(self, *, interval_pre_test: int = 15, interval_after_test: int = 0, aggregate_test: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.window: LookaheadWindow[Any] = LookaheadWindow(
            before=interval_pre_test if aggregate_test else 0, after=interval_after_test if aggregate_test else 0
        )
        self._input_size: tuple[int, int] | None = None

    @classmethod
    def window_from_config(cls, cfg: ExperimentConfig) -> dict:
        """The test window's arguments from ``cfg.model.temporal``."""
        t = cfg.model.temporal
        return dict(
            interval_pre_test=t.interval_pre_test, interval_after_test=t.interval_after_test, aggregate_test=t.aggregate_test
        )

    @property
    def lookahead(self) -> int:
        return self.window.after

    @property
    def temporal_aggregation(self) -> bool:
        """True: frames are aggregated at test time."""
        return True

    # ------------------------------------------------------------------ training
    def clip_losses(self, clip: dict) -> dict[str, torch.Tensor]:
        """The criterion's losses on the supervised frames of the clip, predicted as one temporal set."""
        images = self.normalise(clip["images"])
        predictions, frames = self.predict_clip(self.backbone(images))
        targets = self.set_targets(clip, images)
        return self.set_losses(predictions, [targets[t] for t in frames])

    def set_losses(self, predictions: Predictions, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The named losses of :meth:`predict_clip`'s predictions against the supervised frames'
        targets (:meth:`set_targets`, in the same order): the criterion's, here."""
        return self.criterion(predictions, targets)

    def predict_clip(self, features: torch.Tensor) -> tuple[Predictions, list[int]]:
        """``(predictions, frames)``: per decoder layer the predictions ``[F, Q, ...]`` of the
        clip frames ``frames`` (F of them, in clip order), for the clip's backbone maps
        ``FloatTensor[T, C, h, w]``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ online inference
    def frame_item(self, features: torch.Tensor) -> Any:
        """What the test buffer keeps of the current frame, from its backbone map ``FloatTensor[1, C, h, w]``."""
        raise NotImplementedError

    def predict_window(self, items: list, index: int) -> Predictions:
        """Per decoder layer the predictions ``[1, Q, ...]`` of frame ``items[index]``, given
        the buffered items of its window (oldest first)."""
        raise NotImplementedError

    def detect(self, images: torch.Tensor) -> dict[str, torch.Tensor] | None:
        self._input_size = tuple(images.shape[-2:])
        self.window.append(self.frame_item(self.backbone(images)))
        ready = self.window.pop_ready()
        return None if ready is None else self.select(self.predict_window(*ready)[-1], self._input_size)

    def flush_detections(self) -> list[dict[str, torch.Tensor]]:
        return [self.select(self.predict_window(items, index)[-1], self._input_size) for items, index in self.window.drain()]

    def reset(self) -> None:
        super().reset()
        self.window.clear()
