"""The one-stage baselines' "head" (spec section 6, ``TemporalProposalNetwork``: FCOS / DeFCN
with proposals as the detections): with it, :class:`TemporalRCNN` becomes a single-frame
one-stage detector, e.g. DeFCN (Wang et al., CVPR 2021) with the ``poto`` proposal generator."""

from __future__ import annotations

import torch
from torch import nn


class ProposalDetections(nn.Module):
    """Passes each frame's proposals through as its detections; no parameters, no state, no
    losses of its own (the proposal generator's losses train the model). Same interface as the
    RoI heads (``docs/architecture.md``)."""

    def forward_train(
        self, features: torch.Tensor, proposals: list[dict], targets: list[dict], images: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """No losses: ``{}``."""
        return {}

    def reset(self) -> None:
        """Nothing to forget: every frame is detected on its own."""

    def flush(self) -> list[dict]:
        """Every frame was answered at once: ``[]``."""
        return []

    def forward_frame(self, features: torch.Tensor, proposals: dict, image: torch.Tensor) -> dict:
        """``{"boxes": FloatTensor[P, 4], "scores": FloatTensor[P], "labels": LongTensor[P]}``:
        the proposals (XYXY input pixels, objectness probability), all labelled lesion (0)."""
        boxes = proposals["boxes"]
        labels = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
        return {"boxes": boxes, "scores": proposals["scores"], "labels": labels}
