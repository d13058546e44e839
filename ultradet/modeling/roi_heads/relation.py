"""BasicDet / RDN head: relation across the RoIs of several frames (spec section 3.6)."""

from __future__ import annotations

from typing import Any

import torch

from ultradet.config import ExperimentConfig
from ultradet.modeling.layers.relation import RelationLayers
from ultradet.modeling.registry import ROI_HEADS
from ultradet.modeling.roi_heads.buffered import BufferedROIHeads


@ROI_HEADS.register("relation")
class RelationROIHeads(BufferedROIHeads):
    """RoI vectors of several frames attend to each other through :class:`RelationLayers`.

    Training: the sampled RoIs of all T frames of the clip are one token set (not causal, as in
    the original); GT-appended boxes are queries but not keys; losses on every frame.
    Test: the FIFO of :class:`BufferedROIHeads`; relation over all buffered RoIs, the last layer
    for the classified frame only.

    Args:
        relation_layers: stacked relation layers (2). relation_heads: heads per layer (8).
        **kwargs: see :class:`BufferedROIHeads`.
    """

    def __init__(self, *, relation_layers: int = 2, relation_heads: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.relation = RelationLayers(d_model=self.d_model, num_layers=relation_layers, num_heads=relation_heads)

    @classmethod
    def config_kwargs(cls, cfg: ExperimentConfig) -> dict[str, Any]:
        rh = cfg.model.roi_heads
        return {**super().config_kwargs(cfg), "relation_layers": rh.relation_layers, "relation_heads": rh.relation_heads}

    def aggregate(self, x: torch.Tensor, boxes: torch.Tensor, queries: slice) -> torch.Tensor:
        return self.relation(x, boxes, queries=queries)

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
