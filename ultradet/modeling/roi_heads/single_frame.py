"""Per-frame RoI head: the Faster R-CNN (C4) baseline (spec section 6, ``SingleFrameRes5ROIHeads``)."""

from __future__ import annotations

import torch

from ultradet.modeling.registry import ROI_HEADS
from ultradet.modeling.roi_heads.base import Res5ROIHeads


@ROI_HEADS.register("single_frame")
class SingleFrameROIHeads(Res5ROIHeads):
    """Classifies each frame's RoIs on their own; no temporal context, no test-time state.
    Arguments: see :class:`Res5ROIHeads`."""

    def forward_train(
        self,
        features: torch.Tensor,
        proposals: list[dict],
        targets: list[dict],
        images: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses of one clip.

        Args:
            features: ``FloatTensor[T, C, h, w]``, res4 maps.
            proposals: T dicts ``{"boxes": FloatTensor[P, 4], "scores": FloatTensor[P]}``, XYXY
                input-image pixels.
            targets: T dicts ``{"boxes": FloatTensor[K, 4], "labels": LongTensor[K]}``; K may be 0.
            images: unused (interface parity with the temporal heads).

        Returns:
            ``{"loss_cls", "loss_box_reg"}`` scalar tensors.
        """
        sampled = self.sampler(proposals, targets)
        x = self.box_encoder(features, [s.boxes for s in sampled])
        return self.losses(x, sampled)

    def forward_frame(self, features: torch.Tensor, proposals: dict, image: torch.Tensor) -> dict:
        """Detections of one frame.

        Args:
            features: ``FloatTensor[1, C, h, w]``; proposals: ``{"boxes": FloatTensor[P, 4], ...}``;
            image: normalised ``FloatTensor[1, 3, H, W]`` (only its size is used).

        Returns:
            ``{"boxes": FloatTensor[N, 4], "scores": FloatTensor[N], "labels": LongTensor[N]}``,
            XYXY input-image pixels, clipped to ``(H, W)``.
        """
        boxes = proposals["boxes"]
        x = self.box_encoder(features, [boxes])
        return self.predict(x, boxes, tuple(image.shape[-2:]))
