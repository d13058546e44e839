"""The detector contract the engine relies on, and the base class that implements its plumbing.

Every meta-architecture of ``META_ARCHITECTURES`` (detectron2's ``META_ARCH_REGISTRY``) is a
:class:`VideoDetector`: it builds and owns its parts from the config (``from_config``), trains on
whole clips and answers online, one frame at a time, resetting every stateful part at each new
video. Nothing above ``ultradet.modeling`` knows which family a detector belongs to.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torchvision.ops import clip_boxes_to_image

from ultradet.config import ExperimentConfig


@runtime_checkable
class Detector(Protocol):
    """What ``ultradet.engine`` calls (``docs/architecture.md``, "modeling: the meta-architecture").

    - ``forward(clips: list[clip dict]) -> dict[str, Tensor]``: named scalar training losses of a
      batch of clips (``images`` ``FloatTensor[T, 3, H, W]`` RGB 0..255, ``boxes``/``labels`` per
      frame, XYXY pixels); only in training mode.
    - ``reset()``: a new video starts; every test-time buffer and track is cleared.
    - ``infer_frame(image: FloatTensor[3, H, W], original_size: (h, w)) -> dict | None``: the
      detections ``{"boxes": FloatTensor[N, 4] (XYXY pixels of the original frame), "scores":
      FloatTensor[N], "labels": LongTensor[N]}`` of the frame ``lookahead`` frames back (None
      while a bounded lookahead waits); only in eval mode.
    - ``flush() -> list[dict]``: at the end of a video, the ``lookahead`` outputs still owed.
    - ``lookahead: int``: frames an output is emitted late (0 = causal).
    """

    lookahead: int

    def forward(self, clips: list[dict]) -> dict[str, torch.Tensor]: ...

    def reset(self) -> None: ...

    def infer_frame(self, image: torch.Tensor, original_size: tuple[int, int]) -> dict | None: ...

    def flush(self) -> list[dict]: ...


class VideoDetector(nn.Module):
    """Base of every meta-architecture: input normalisation, the per-clip loss average, and the
    online plumbing of :class:`Detector` (input checks, the sizes of the frames still owed,
    boxes mapped back to the original frame).

    A subclass implements :meth:`clip_losses` (one clip), :meth:`detect` (the next ready
    detections, in input pixels) and, if it buffers frames, :meth:`flush_detections`,
    :meth:`reset` (calling ``super().reset()``) and :attr:`lookahead`.

    Args:
        backbone: ``FloatTensor[T, 3, H, W] -> FloatTensor[T, C, h, w]`` (normalised input).
        pixel_mean, pixel_std: RGB normalisation, in 0..255 units.
    """

    def __init__(
        self, *, backbone: nn.Module, pixel_mean: tuple[float, float, float], pixel_std: tuple[float, float, float]
    ):
        super().__init__()
        self.backbone = backbone
        # (input size, original size) of the frames whose detections are still owed (lookahead).
        self._owed_sizes: deque[tuple[tuple[int, int], tuple[int, int]]] = deque()
        # Not in checkpoints: they come from the config.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1).float(), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1).float(), persistent=False)

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "VideoDetector":
        """The detector of ``cfg.model``, its parts built from their own config sections."""
        raise NotImplementedError

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """``FloatTensor[T, 3, H, W]`` RGB 0..255 -> ``(x - pixel_mean) / pixel_std`` on the model's device."""
        images = images.to(self.pixel_mean.device, self.pixel_mean.dtype)
        return (images - self.pixel_mean) / self.pixel_std

    @property
    def lookahead(self) -> int:
        """Frames an output is emitted late (0 = causal)."""
        return 0

    @property
    def temporal_aggregation(self) -> bool:
        """Whether the detector aggregates features over frames at test time, i.e. whether the
        temporal ablation (``model.temporal.aggregate_test``) changes its output; False here."""
        return False

    # ------------------------------------------------------------------ training
    def forward(self, clips: list[dict]) -> dict[str, torch.Tensor]:
        """Losses of a batch of clips (``docs/architecture.md``: ``images`` ``[T, 3, H, W]``,
        ``boxes``/``labels`` per frame). Each clip runs alone (clips differ in size, and the
        temporal parts treat their input as one clip); the losses are averaged over clips.

        Returns:
            Named scalar losses (:meth:`clip_losses`).

        Raises:
            RuntimeError: called in eval mode (use :meth:`infer_frame`).
            ValueError: an empty batch.
        """
        if not self.training:
            raise RuntimeError(f"{type(self).__name__}.forward computes training losses; call model.train() or use infer_frame()")
        if not clips:
            raise ValueError("empty batch: expected at least one clip")
        per_clip = [self.clip_losses(clip) for clip in clips]
        return {name: torch.stack([losses[name] for losses in per_clip]).mean() for name in per_clip[0]}

    def clip_losses(self, clip: dict) -> dict[str, torch.Tensor]:
        """Named scalar losses of one clip dict."""
        raise NotImplementedError

    def clip_targets(self, clip: dict, device: torch.device) -> list[dict[str, torch.Tensor]]:
        """The clip's per-frame ``{"boxes": FloatTensor[K, 4], "labels": LongTensor[K]}`` on ``device``."""
        return [
            {"boxes": boxes.to(device, torch.float32), "labels": labels.to(device)}
            for boxes, labels in zip(clip["boxes"], clip["labels"])
        ]

    # ------------------------------------------------------------------ online inference
    def reset(self) -> None:
        """Start a new video: clear every test-time buffer (subclasses clear theirs, then call this)."""
        self._owed_sizes.clear()

    @torch.no_grad()
    def infer_frame(self, image: torch.Tensor, original_size: tuple[int, int]) -> dict[str, torch.Tensor] | None:
        """Detections of the next frame of the current video (with a lookahead of ``k`` frames:
        of the frame ``k`` frames back, None for the first ``k`` frames of a video).

        Args:
            image: ``FloatTensor[3, H, W]``, RGB 0..255, the resized test frame.
            original_size: ``(h, w)`` of the original frame (the annotation's size).

        Returns:
            ``{"boxes": FloatTensor[N, 4], "scores": FloatTensor[N], "labels": LongTensor[N]}``,
            boxes XYXY in pixels of the **original** frame (of the frame answered), clipped to
            it; None while a lookahead waits for later frames.

        Raises:
            RuntimeError: the model is in training mode (BN statistics and sampling would differ).
            ValueError: ``image`` is not ``[3, H, W]``.
        """
        if self.training:
            raise RuntimeError("infer_frame needs model.eval() (the model is in training mode)")
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"infer_frame expects one FloatTensor[3, H, W] frame, got shape {tuple(image.shape)}")
        images = self.normalise(image[None])
        self._owed_sizes.append((tuple(images.shape[-2:]), tuple(original_size)))
        output = self.detect(images)
        return None if output is None else _rescale(output, *self._owed_sizes.popleft())

    @torch.no_grad()
    def flush(self) -> list[dict[str, torch.Tensor]]:
        """At the end of a video, the detections still owed (the last ``lookahead`` frames, in
        frame order; ``[]`` when causal), in the format of :meth:`infer_frame`."""
        return [_rescale(output, *self._owed_sizes.popleft()) for output in self.flush_detections()]

    def detect(self, images: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """Given the current normalised frame ``[1, 3, H, W]``, the detections of the next frame
        ready (``boxes`` XYXY input pixels, ``scores``, ``labels``), or None while it waits."""
        raise NotImplementedError

    def flush_detections(self) -> list[dict[str, torch.Tensor]]:
        """The detections still owed at the end of a video, oldest first (none here)."""
        return []


def _rescale(output: dict, input_size: tuple[int, int], original_size: tuple[int, int]) -> dict:
    """Map boxes from input-image pixels to original-frame pixels (independent x / y scales,
    the frame was resized without keeping exact proportions) and clip them to the frame."""
    (in_h, in_w), (h, w) = input_size, original_size
    scale = output["boxes"].new_tensor([w / in_w, h / in_h, w / in_w, h / in_h])
    boxes = clip_boxes_to_image(output["boxes"] * scale, (h, w))
    return {"boxes": boxes, "scores": output["scores"], "labels": output["labels"]}
