"""The two-stage video detector shared by Faster R-CNN, BasicDet and UltraDet (spec section 3.1,
``TemporalRCNN``): normalise -> ResNet C4 backbone -> proposal generator -> RoI head.

Training runs on whole clips; inference is online, one frame at a time, causal by default: all
temporal state lives in the RoI head's buffers, filled only by frames already seen. With a
bounded lookahead of ``k`` frames (``interval_after_test``) each output is emitted ``k`` frames
late and :meth:`TemporalRCNN.flush` emits the last ``k`` at the end of a video. With
:class:`ultradet.modeling.one_stage.ProposalDetections` as the head it is a one-stage detector
(spec section 6, DeFCN).
"""

from __future__ import annotations

from collections import deque

import torch
from torch import nn
from torchvision.ops import clip_boxes_to_image


class TemporalRCNN(nn.Module):
    """
    Args:
        backbone: ``FloatTensor[T, 3, H, W] -> FloatTensor[T, C, h, w]`` (normalised input).
        proposal_generator: see ``docs/architecture.md`` (``rpn`` / ``poto``).
        roi_heads: see ``docs/architecture.md`` (``single_frame`` / ``relation`` / ``ntca``).
        pixel_mean, pixel_std: RGB normalisation, in 0..255 units.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        proposal_generator: nn.Module,
        roi_heads: nn.Module,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
    ):
        super().__init__()
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        # (input size, original size) of the frames whose detections are still owed (lookahead).
        self._owed_sizes: deque[tuple[tuple[int, int], tuple[int, int]]] = deque()
        # Not in checkpoints: they come from the config.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1).float(), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1).float(), persistent=False)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """``FloatTensor[T, 3, H, W]`` RGB 0..255 -> ``(x - pixel_mean) / pixel_std`` on the model's device."""
        images = images.to(self.pixel_mean.device, self.pixel_mean.dtype)
        return (images - self.pixel_mean) / self.pixel_std

    # ------------------------------------------------------------------ training
    def forward(self, clips: list[dict]) -> dict[str, torch.Tensor]:
        """Losses of a batch of clips (``docs/architecture.md``: ``images`` ``[T, 3, H, W]``,
        ``boxes``/``labels`` per frame). Each clip runs alone (clips differ in size, and the
        temporal heads treat their input as one clip); the losses are averaged over clips.

        Returns:
            Named scalar losses: the proposal generator's and ``loss_cls``, ``loss_box_reg``.

        Raises:
            RuntimeError: called in eval mode (use :meth:`infer_frame`).
            ValueError: an empty batch.
        """
        if not self.training:
            raise RuntimeError("TemporalRCNN.forward computes training losses; call model.train() or use infer_frame()")
        if not clips:
            raise ValueError("empty batch: expected at least one clip")
        per_clip = [self._clip_losses(clip) for clip in clips]
        return {name: torch.stack([losses[name] for losses in per_clip]).mean() for name in per_clip[0]}

    def _clip_losses(self, clip: dict) -> dict[str, torch.Tensor]:
        images = self.normalise(clip["images"])
        device = images.device
        targets = [
            {"boxes": boxes.to(device, torch.float32), "labels": labels.to(device)}
            for boxes, labels in zip(clip["boxes"], clip["labels"])
        ]
        features = self.clip_features(images)
        proposals, losses = self.proposal_generator(features, tuple(images.shape[-2:]), targets)
        losses.update(self.roi_heads.forward_train(features, proposals, targets, images))
        return losses

    def clip_features(self, images: torch.Tensor) -> torch.Tensor:
        """Training feature maps of a normalised clip ``[T, 3, H, W]`` -> ``[T, C, h, w]`` (the
        backbone's; meta-architectures that aggregate maps across frames override it)."""
        return self.backbone(images)

    def frame_features(self, images: torch.Tensor) -> torch.Tensor:
        """Test feature map of the current normalised frame ``[1, 3, H, W]`` -> ``[1, C, h, w]``
        (the backbone's; overridden like :meth:`clip_features`)."""
        return self.backbone(images)

    @property
    def lookahead(self) -> int:
        """Frames an output is emitted late (``interval_after_test``; 0 = causal)."""
        return getattr(self.roi_heads, "interval_after_test", 0)

    # ------------------------------------------------------------------ online inference
    def reset(self) -> None:
        """Start a new video: clear every test-time buffer."""
        self.roi_heads.reset()
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
        features = self.frame_features(images)
        proposals, _ = self.proposal_generator(features, tuple(images.shape[-2:]))
        output = self.roi_heads.forward_frame(features, proposals[0], images)
        self._owed_sizes.append((tuple(images.shape[-2:]), tuple(original_size)))
        return None if output is None else _rescale(output, *self._owed_sizes.popleft())

    @torch.no_grad()
    def flush(self) -> list[dict[str, torch.Tensor]]:
        """At the end of a video, the detections still owed (the last ``lookahead`` frames, in
        frame order; ``[]`` when causal), in the format of :meth:`infer_frame`."""
        return [_rescale(output, *self._owed_sizes.popleft()) for output in self.roi_heads.flush()]


def _rescale(output: dict, input_size: tuple[int, int], original_size: tuple[int, int]) -> dict:
    """Map boxes from input-image pixels to original-frame pixels (independent x / y scales,
    the frame was resized without keeping exact proportions) and clip them to the frame."""
    (in_h, in_w), (h, w) = input_size, original_size
    scale = output["boxes"].new_tensor([w / in_w, h / in_h, w / in_w, h / in_h])
    boxes = clip_boxes_to_image(output["boxes"] * scale, (h, w))
    return {"boxes": boxes, "scores": output["scores"], "labels": output["labels"]}
