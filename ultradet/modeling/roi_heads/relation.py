"""BasicDet / RDN head: relation across the RoIs of several frames (spec section 3.6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ultradet.config import ExperimentConfig
from ultradet.modeling.layers.relation import RelationLayers, geometric_embedding
from ultradet.modeling.registry import ROI_HEADS
from ultradet.modeling.roi_heads.buffered import BufferedFrame, BufferedROIHeads, rows_of, tokens_of


@dataclass
class RelationFrame(BufferedFrame):
    """A buffered frame (:class:`BufferedFrame`) plus ``geometry``: for each buffered frame (by
    ``id``), ``FloatTensor[layers, heads, P, P_other]``, the relation layers' geometric logits
    (:meth:`RelationModule.geometry_logits`) of this frame's RoIs (rows) against that frame's."""

    geometry: dict[int, torch.Tensor] = field(default_factory=dict, kw_only=True)


@ROI_HEADS.register("relation")
class RelationROIHeads(BufferedROIHeads):
    """RoI vectors of several frames attend to each other through :class:`RelationLayers`.

    Training and test as :class:`BufferedROIHeads`: relation over the clip's sampled RoIs, or
    over the RoIs of the classified frame's window, the last layer for that frame only.

    At test time the geometric logits of two frames' RoIs depend on their boxes only, and the
    window slides by one frame: each pair of buffered frames gets them once, when the later of
    the two arrives (:meth:`cache_geometry`), and a window assembles its own from them
    (:meth:`window_geometry`) instead of embedding every pair of its ``N`` RoIs at every frame.

    Temporal ablation (``aggregate_test=False``): the window is the classified frame alone, so
    the relation layers' keys and values are that frame's ``P`` RoIs only: the test-time
    computation of the RelationNet head (:class:`FrameRelationROIHeads`) with these weights.

    Args:
        relation_layers: stacked relation layers (2). relation_heads: heads per layer (8).
        **kwargs: see :class:`BufferedROIHeads`.
    """

    frame_type = RelationFrame

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

    def aggregate_window(self, frames: list[BufferedFrame], index: int) -> torch.Tensor:
        tokens, boxes = tokens_of(frames)
        return self.relation(tokens, boxes, queries=rows_of(frames, index), geometry=self.window_geometry(frames, index))

    def buffer(self, features: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor) -> None:
        super().buffer(features, boxes, image)
        self.cache_geometry()

    def cache_geometry(self) -> None:
        """Give the newest buffered frame its geometric logits against every buffered frame
        (itself included) and every older frame its logits against the newest; forget those of
        frames that left the FIFO. Two embeddings of ``P x N`` box pairs per frame (``P``: the
        new frame's RoIs, ``N``: the buffered ones) instead of ``N x N`` per window."""
        frames = list(self.history)
        newest, live = frames[-1], {id(f) for f in frames}
        # Keys are ids of frames in the FIFO: a frame that left is forgotten here, at the append
        # that pushed it out, before any later frame object could be given its id.
        for frame in frames:
            frame.geometry = {key: block for key, block in frame.geometry.items() if key in live}
        sizes = [len(f.boxes) for f in frames]
        rows = self._pair_logits(newest.boxes, torch.cat([f.boxes for f in frames]))
        newest.geometry.update({id(f): block for f, block in zip(frames, rows.split(sizes, dim=3))})
        if len(frames) > 1:
            columns = self._pair_logits(torch.cat([f.boxes for f in frames[:-1]]), newest.boxes)
            for frame, block in zip(frames[:-1], columns.split(sizes[:-1], dim=2)):
                frame.geometry[id(newest)] = block

    def window_geometry(self, frames: list[RelationFrame], index: int) -> list[torch.Tensor]:
        """The window's geometric logits per relation layer, as :func:`layer_geometry` of its
        RoIs with ``queries`` = ``frames[index]``'s: ``[heads, N, N]``, the last layer
        ``[heads, P, N]``; assembled from the frames' cached blocks."""
        rows = [torch.cat([a.geometry[id(b)] for b in frames], dim=3) for a in frames]  # [layers, heads, P_a, N]
        last = len(self.relation.layers) - 1
        full = torch.cat([r[:last] for r in rows], dim=2)
        return list(full) + [rows[index][last]]

    def _pair_logits(self, boxes_q: torch.Tensor, boxes_k: torch.Tensor) -> torch.Tensor:
        """``FloatTensor[layers, heads, Q, K]``: every layer's geometric logits of the box pairs."""
        embedding = geometric_embedding(boxes_q, boxes_k, self.d_model)
        return torch.stack([layer.geometry_logits(embedding) for layer in self.relation.layers])
