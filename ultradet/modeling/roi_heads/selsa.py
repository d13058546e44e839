"""SELSA head: BasicDet's head with SELSA attention instead of the relation module (baselines
spec 1.4, ``Res5SELSAHeads``; Wu et al., ICCV 2019)."""

from __future__ import annotations

from typing import Any

import torch

from ultradet.config import ExperimentConfig
from ultradet.modeling.layers.selsa import SELSALayers
from ultradet.modeling.registry import ROI_HEADS
from ultradet.modeling.roi_heads.buffered import BufferedROIHeads


@ROI_HEADS.register("selsa")
class SELSAROIHeads(BufferedROIHeads):
    """RoI vectors aggregate by :class:`SELSALayers`.

    Training: all sampled RoIs of the clip are queries; the keys are every frame's real proposals
    (GT-appended boxes are masked), bidirectional over the clip; losses on every frame.
    Test: the FIFO of :class:`BufferedROIHeads` (``interval_pre_test`` = 15: current + 15
    previous frames); all buffered RoIs are keys, only the classified frame is classified.

    Args:
        selsa_layers: stacked SELSA layers (2; config ``relation_layers``).
        transform_init: start of the layers' transform, ``"normal"`` (the original) or
            ``"identity"`` (fine-tuning a pretrained detector; :class:`SELSALayer`).
        **kwargs: see :class:`BufferedROIHeads`.
    """

    def __init__(self, *, selsa_layers: int = 2, transform_init: str = "normal", **kwargs):
        super().__init__(**kwargs)
        self.selsa = SELSALayers(d_model=self.d_model, num_layers=selsa_layers, transform_init=transform_init)

    @classmethod
    def config_kwargs(cls, cfg: ExperimentConfig) -> dict[str, Any]:
        return {
            **super().config_kwargs(cfg),
            "selsa_layers": cfg.model.relation.relation_layers,
            "transform_init": cfg.model.selsa.transform_init,
        }

    def aggregate(
        self,
        x: torch.Tensor,
        boxes: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        queries: slice | None = None,
    ) -> torch.Tensor:
        """SELSA has no geometry term: ``boxes`` are unused."""
        return self.selsa(x, key_mask=key_mask, queries=queries)
