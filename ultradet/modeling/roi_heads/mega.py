"""MEGA head: BasicDet's relation over a local window plus a memory of RoI features cached from
earlier frames (baselines spec 1.5, ``MEGAHeads``; Chen et al., "Memory Enhanced Global-Local
Aggregation for Video Object Detection", CVPR 2020, section 3.3-3.4)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from ultradet.config import ExperimentConfig
from ultradet.modeling.layers.relation import geometric_embedding
from ultradet.modeling.registry import ROI_HEADS
from ultradet.modeling.roi_heads.buffered import BufferedFrame, rows_of, tokens_of
from ultradet.modeling.roi_heads.relation import RelationROIHeads


@dataclass
class MemoryEntry:
    """One frame's cached RoI features: ``boxes`` ``FloatTensor[P, 4]`` (XYXY pixels) and
    ``layers[l]`` ``FloatTensor[P, d_model]``, the input of relation layer ``l`` (``layers[0]``:
    the raw RoI vectors)."""

    boxes: torch.Tensor
    layers: list[torch.Tensor]


@ROI_HEADS.register("mega")
class MEGAROIHeads(RelationROIHeads):
    """Relation layer ``l`` updates the local RoIs ``X^l`` with keys / values ``[X^l; M^l]``: the
    local RoIs and the memory RoIs at the same depth (geometry of local vs. local + memory boxes);
    memory keys are never masked.

    Training (one clip of T frames, sorted): the first ``min(memory_frames, T - 1)`` frames are
    the memory, the rest the local frames. With the memory sampler (``sampler.name: memory``,
    the original's ``MemoryFrameSampler``, baselines spec 0; ``sampler.memory_frames`` must equal
    ``memory_frames``) these are exactly its memory frames, drawn from the frames before the local
    window; with the plain clip sampler, the clip's earliest frames. Memory RoIs: every proposal of a memory frame, pooled
    without gradient on detached maps; ``M^0`` = those vectors, ``M^{l+1}`` = relation layer ``l``
    over the memory RoIs alone (no gradient). Local RoIs: sampled as usual (GT-appended boxes
    are not keys); losses on the local frames only.

    Test: the FIFO of :class:`BufferedROIHeads` is the local window (raw RoI vectors): the
    classified frame ``t`` and the ``interval_pre_test`` earlier frames, plus, with a bounded
    lookahead of ``k = interval_after_test`` frames, frames ``t + 1 .. t + k`` (as published
    MEGA's local frames on both sides of the key frame). Every frame's layer inputs
    ``[X^0, X^1, ...]``, computed when it is classified, are cached; the memory is the cache of
    the ``memory_frames`` frames just before the local window (published MEGA: memory strictly
    older than the local frames; the original's slice overlaps them, see docs/reproduction.md).
    Only the classified frame is classified.

    Temporal ablation (``aggregate_test=False``): the local window is the classified frame alone
    (:class:`BufferedROIHeads`) and the memory is empty: the relation layers see only that
    frame's RoIs, as at the first frame of a causal run.

    Args:
        memory_frames: memory frames (6).
        **kwargs: see :class:`RelationROIHeads`.
    """

    def __init__(self, *, memory_frames: int = 6, **kwargs):
        super().__init__(**kwargs)
        self.memory_frames = memory_frames
        self.cache: deque[MemoryEntry] = deque(maxlen=self.interval_pre_test + memory_frames)

    @classmethod
    def config_kwargs(cls, cfg: ExperimentConfig) -> dict[str, Any]:
        return {**super().config_kwargs(cfg), "memory_frames": cfg.model.mega.memory_frames}

    def enhance(
        self,
        x: torch.Tensor,
        boxes: torch.Tensor,
        memory: MemoryEntry,
        key_mask: torch.Tensor | None = None,
        queries: slice | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Local aggregation with memory (baselines spec 1.5).

        Args:
            x: ``FloatTensor[N, d_model]`` local RoI vectors; boxes: ``FloatTensor[N, 4]``.
            memory: the memory RoIs (``M`` boxes, one ``[M, d_model]`` tensor per layer; M may be 0).
            key_mask: ``BoolTensor[N]``, False = local token never attended to; None = all.
            queries: local tokens whose output is wanted (the last layer updates only these).

        Returns:
            ``(FloatTensor[Q, d_model], inputs)``: the updated ``queries`` rows and the input of
            every layer (``[N, d_model]`` each).
        """
        all_boxes = torch.cat([boxes, memory.boxes])
        # Rows = local queries only; RelationModule indexes these rows with ``queries``.
        embedding = geometric_embedding(boxes, all_boxes, self.d_model)
        if key_mask is not None:
            key_mask = torch.cat([key_mask, key_mask.new_ones(len(memory.boxes))])
        inputs = []
        last = len(self.relation.layers) - 1
        for i, (layer, m) in enumerate(zip(self.relation.layers, memory.layers)):
            inputs.append(x)
            q = queries if i == last and queries is not None else slice(0, len(x))
            x = layer(torch.cat([x, m]), embedding, key_mask, q)
        return x, inputs

    @torch.no_grad()
    def memory_from(self, vectors: torch.Tensor, boxes: torch.Tensor) -> MemoryEntry:
        """Training memory: the layer inputs of relation over the memory RoIs alone (no mask,
        no gradient). ``vectors`` ``[M, d_model]``, ``boxes`` ``[M, 4]``."""
        layers, x = [vectors], vectors
        embedding = geometric_embedding(boxes, boxes, self.d_model)
        for layer in self.relation.layers[:-1]:
            x = layer(x, embedding)
            layers.append(x)
        return MemoryEntry(boxes, layers)

    def forward_train(
        self, features: torch.Tensor, proposals: list[dict], targets: list[dict], images: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Losses of the local frames of one clip; arguments as in
        :meth:`SingleFrameROIHeads.forward_train` (``images`` unused).

        Raises:
            ValueError: a clip of fewer than 2 frames (no memory frame and a local frame).
        """
        if len(features) < 2:
            raise ValueError(f"the mega head trains on clips of >= 2 frames (memory + local), got {len(features)}")
        n_mem = min(self.memory_frames, len(features) - 1)
        with torch.no_grad():
            mem_boxes = [p["boxes"].detach() for p in proposals[:n_mem]]
            mem_vectors = self.box_encoder(features[:n_mem].detach(), mem_boxes)
        memory = self.memory_from(mem_vectors, torch.cat(mem_boxes))
        sampled = self.sampler(proposals[n_mem:], targets[n_mem:])
        x = self.box_encoder(features[n_mem:], [s.boxes for s in sampled])
        is_gt = torch.cat([s.is_gt for s in sampled])
        x, _ = self.enhance(x, torch.cat([s.boxes for s in sampled]), memory, key_mask=~is_gt)
        return self.losses(x, sampled)

    def reset(self) -> None:
        super().reset()
        self.cache.clear()

    def memory(self) -> list[MemoryEntry]:
        """The memory of the next frame to classify, oldest first: the cached entries of the
        ``memory_frames`` frames before its local window (the newest ``interval_pre_test``
        cached frames are in the local window); none in the temporal ablation."""
        if not self.aggregate_test:
            return []
        return list(self.cache)[: max(0, len(self.cache) - self.interval_pre_test)][-self.memory_frames :]

    def aggregate_window(self, frames: list[BufferedFrame], index: int) -> torch.Tensor:
        """Relation over the local window's RoIs with the memory RoIs as extra keys; the
        classified frame's layer inputs join the cache (the memory of later frames)."""
        entries = self.memory()
        empty = frames[index].vectors[:0]
        memory = MemoryEntry(
            torch.cat([frames[index].boxes[:0]] + [e.boxes for e in entries]),
            [torch.cat([empty] + [e.layers[i] for e in entries]) for i in range(len(self.relation.layers))],
        )
        tokens, boxes = tokens_of(frames)
        query = rows_of(frames, index)
        x, inputs = self.enhance(tokens, boxes, memory, queries=query)
        self.cache.append(MemoryEntry(frames[index].boxes, [layer_input[query] for layer_input in inputs]))
        return x
