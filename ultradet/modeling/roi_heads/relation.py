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

    Training and test as :class:`BufferedROIHeads`: relation over the clip's sampled RoIs, or
    over the RoIs of the classified frame's window, the last layer for that frame only.

    Args:
        relation_layers: stacked relation layers (2). relation_heads: heads per layer (8).
        **kwargs: see :class:`BufferedROIHeads`.
    """

    def __init__(self, *, relation_layers: int = 2, relation_heads: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.relation = RelationLayers(d_model=self.d_model, num_layers=relation_layers, num_heads=relation_heads)

    @classmethod
    def config_kwargs(cls, cfg: ExperimentConfig) -> dict[str, Any]:
        relation = cfg.model.relation
        return {
            **super().config_kwargs(cfg),
            "relation_layers": relation.relation_layers,
            "relation_heads": relation.relation_heads,
        }

    def aggregate(
        self,
        x: torch.Tensor,
        boxes: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        queries: slice | None = None,
    ) -> torch.Tensor:
        return self.relation(x, boxes, key_mask=key_mask, queries=queries)
