"""RelationNet head: the relation module within one frame (baselines spec 1.2,
``Res5RelationROIBoxHeads``; Hu et al., "Relation Networks for Object Detection", CVPR 2018)."""

from __future__ import annotations

import torch

from ultradet.modeling.registry import ROI_HEADS
from ultradet.modeling.roi_heads.relation import RelationROIHeads


@ROI_HEADS.register("frame_relation")
class FrameRelationROIHeads(RelationROIHeads):
    """An image detector: the RoIs of each frame attend to each other through the
    :class:`RelationLayers` of BasicDet (2 layers, 8 heads, geometry term), never to another
    frame's. Training: per frame, GT-appended boxes are queries but not keys (the original pads
    each frame to the same count and masks padding and GT as keys, which is the same). Test: no
    buffer (``interval_pre_test = interval_after_test = 0``), ``reset`` forgets nothing that
    matters. Arguments: see :class:`RelationROIHeads` (its buffer sizes are fixed to 0)."""

    temporal_aggregation = False  # one frame at a time already: the temporal ablation changes nothing

    def __init__(self, **kwargs):
        # The buffer sizes are fixed here, not only in from_config: a head built directly must not
        # relate a frame's RoIs to the previous frames' (BasicDet's test time).
        super().__init__(**{**kwargs, "interval_pre_test": 0, "interval_after_test": 0})

    def forward_train(
        self, features: torch.Tensor, proposals: list[dict], targets: list[dict], images: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Losses of one clip whose frames are independent images; arguments as in
        :meth:`SingleFrameROIHeads.forward_train` (``images`` unused)."""
        sampled = self.sampler(proposals, targets)
        x = self.box_encoder(features, [s.boxes for s in sampled])
        per_frame = x.split([len(s.boxes) for s in sampled])
        x = torch.cat([self.relation(v, s.boxes, key_mask=~s.is_gt) for v, s in zip(per_frame, sampled)])
        return self.losses(x, sampled)
