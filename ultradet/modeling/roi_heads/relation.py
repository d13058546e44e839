"""BasicDet / RDN head: relation across the RoIs of several frames (spec section 3.6)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from ultradet.config import ExperimentConfig
from ultradet.modeling.layers.relation import RelationLayers
from ultradet.modeling.registry import ROI_HEADS
from ultradet.modeling.roi_heads.base import Res5ROIHeads


@dataclass
class BufferedFrame:
    """What the test-time FIFO keeps of one frame: ``boxes`` (``FloatTensor[P, 4]``, XYXY pixels)
    and their RoI vectors (``FloatTensor[P, d_model]``, pooled once, never recomputed)."""

    boxes: torch.Tensor
    vectors: torch.Tensor


@ROI_HEADS.register("relation")
class RelationROIHeads(Res5ROIHeads):
    """RoI vectors of several frames attend to each other through :class:`RelationLayers`.

    Training: the sampled RoIs of all T frames of the clip are one token set (not causal, as in
    the original); GT-appended boxes are queries but not keys; losses on every frame.
    Test: a FIFO of the last ``interval_pre_test`` frames plus the current one; relation over all
    buffered RoIs; only the current frame is classified.

    Args:
        relation_layers: stacked relation layers (2). relation_heads: heads per layer (8).
        interval_pre_test: earlier frames kept at test time (15).
        **kwargs: see :class:`Res5ROIHeads`.
    """

    def __init__(self, *, relation_layers: int = 2, relation_heads: int = 8, interval_pre_test: int = 15, **kwargs):
        super().__init__(**kwargs)
        self.relation = RelationLayers(d_model=self.d_model, num_layers=relation_layers, num_heads=relation_heads)
        self.interval_pre_test = interval_pre_test
        self.history: deque[BufferedFrame] = deque(maxlen=interval_pre_test + 1)

    @classmethod
    def config_kwargs(cls, cfg: ExperimentConfig) -> dict[str, Any]:
        rh = cfg.model.roi_heads
        return {
            **super().config_kwargs(cfg),
            "relation_layers": rh.relation_layers,
            "relation_heads": rh.relation_heads,
            "interval_pre_test": rh.interval_pre_test,
        }

    def forward_train(
        self, features: torch.Tensor, proposals: list[dict], targets: list[dict], images: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Losses of one clip; arguments as in :meth:`SingleFrameROIHeads.forward_train`
        (``images`` unused). Returns ``{"loss_cls", "loss_box_reg"}``."""
        sampled = self.sampler(proposals, targets)
        x = self.box_encoder(features, [s.boxes for s in sampled])
        boxes = torch.cat([s.boxes for s in sampled])
        is_gt = torch.cat([s.is_gt for s in sampled])
        return self.losses(self.relation(x, boxes, key_mask=~is_gt), sampled)

    def reset(self) -> None:
        self.history.clear()

    def forward_frame(self, features: torch.Tensor, proposals: dict, image: torch.Tensor) -> dict:
        """Detections of the current frame, using the buffered earlier frames.

        Per call: RoIAlign + res5 for the current ``P`` proposals only (earlier frames' vectors are
        cached), one relation pass over the ``<= (interval_pre_test + 1) * P`` buffered tokens
        whose last layer updates only the current frame's tokens.

        Args / Returns: as :meth:`SingleFrameROIHeads.forward_frame`.
        """
        boxes = proposals["boxes"]
        self.history.append(BufferedFrame(boxes, self.box_encoder(features, [boxes]).detach()))
        all_boxes = torch.cat([f.boxes for f in self.history])
        tokens = torch.cat([f.vectors for f in self.history])
        current = slice(len(tokens) - len(boxes), len(tokens))
        x = self.relation(tokens, all_boxes, queries=current)
        return self.predict(x, boxes, tuple(image.shape[-2:]))
