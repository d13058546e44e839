"""PTSEFormer (Wang et al., ECCV 2022; baselines spec 3.4, the original's ``meta_arch/ptseformer.py``
and ``heads/ptseformer_head.py:33-223``): Deformable DETR whose encoder memory passes through
progressive per-pixel attention across the frames of a clip or test window before the decoder."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ultradet.config import ExperimentConfig
from ultradet.modeling.meta_arch.detr import Predictions
from ultradet.modeling.meta_arch.video_detr import VideoSetPredictionDetector
from ultradet.modeling.registry import META_ARCHITECTURES
from ultradet.modeling.transformer import EncodedMaps
from ultradet.modeling.transformer.progressive import GatedModule, PlainModule


class BufferedFrame(NamedTuple):
    """What the test window keeps of a frame: its encoder output ``encoded`` (memory
    ``FloatTensor[1, S, d_model]``) and its STAM output ``stam`` ``FloatTensor[1, S, d_model]``
    (STAM sees the frame alone, so it is computed once; None when the window is recomputed)."""

    encoded: EncodedMaps
    stam: torch.Tensor | None


@META_ARCHITECTURES.register("ptseformer")
class PTSEFormer(VideoSetPredictionDetector):
    """Backbone -> input projection -> deformable encoder per frame (E ``[T, S, d]``) ->
    progressive per-pixel attention across frames -> deformable decoder per frame (baselines spec
    3.4, pipeline ``ptseformer_head.py:90-189``). For the T frames of a clip or window:

    1. E = the encoder memory of each frame (:meth:`encode`);
    2. STAM (gated): R_b = G(E_b, E_b), each frame its own query and memory (sequence length 1);
    3. TFAM (plain): A_f = P(E_f, E), pixel p of frame f attends to pixel p of the T frames;
    4. correlation (plain): B_f = P(A_f, R), along R's frames per pixel;
    5. gated correlation: C_f = G(B_f, E) gated against E_f;
    6. the decoder (refinement, per-layer heads) on C_f, boxes normalised cxcywh.

    Training: the clip is one temporal set, every frame supervised; TFAM and step 5 see every clip
    frame, later ones included (as the original). Test: the window's items are :class:`BufferedFrame`
    (E_t and STAM(E_t)); steps 3-6 run for the answered frame only.

    **Bug fixed** (``ptseformer_head.py:122``): the original re-initialises STAM's result list
    inside its loop, so R is the last frame's alone (``[1, S, d]``); here R holds every frame's STAM
    output (``[T, S, d]``), as the loop intends. ``stam_last_frame_only`` keeps the original's.
    **Bug fixed**: the original never clears its FIFO of encoder memories (its reset does nothing,
    ``deformable_transformer.py:248-250``), so memories leak across videos; :meth:`reset` empties
    the window here. **Deviation kept** (the row): STAM and the correlation attend per pixel
    (along frames, or a length-1 sequence), not over spatial positions as published.
    **Oddity not carried**: the unused 2-layer ``pre_decoder`` and ``reference_points1``
    (``ptseformer_head.py:53, 59, 191-222``) are not built.

    Args:
        stam, gated_correlation: :class:`GatedModule` (steps 2 and 5).
        tfam, correlation: :class:`PlainModule` (steps 3 and 4).
        stam_last_frame_only: the original's R = STAM of the window's last frame only.
        recompute_window: test as the original: steps 2-6 for every frame of the window at every
            frame, only the answered frame kept (the same detections; the default computes STAM
            once per frame and steps 3-6 for the answered frame, since every step is per pixel
            and frame f's C depends only on E of the window and R).
        **kwargs: see :class:`VideoSetPredictionDetector`.
    """

    def __init__(
        self,
        *,
        stam: GatedModule,
        tfam: PlainModule,
        correlation: PlainModule,
        gated_correlation: GatedModule,
        stam_last_frame_only: bool = False,
        recompute_window: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.stam = stam
        self.tfam = tfam
        self.correlation = correlation
        self.gated_correlation = gated_correlation
        self.stam_last_frame_only = stam_last_frame_only
        self.recompute_window = recompute_window

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "PTSEFormer":
        p = cfg.model.ptseformer
        sizes = dict(
            num_blocks=p.num_blocks, d_model=cfg.model.detr.d_model, num_heads=p.num_heads,
            dim_feedforward=p.dim_feedforward, dropout=p.dropout,
        )
        return cls(
            **cls.deformable_parts(cfg),
            **cls.window_from_config(cfg),
            stam=GatedModule(**sizes),
            tfam=PlainModule(**sizes),
            correlation=PlainModule(**sizes),
            gated_correlation=GatedModule(**sizes),
            stam_last_frame_only=p.stam_last_frame_only,
            recompute_window=p.recompute_window,
        )

    # ------------------------------------------------------------------ the steps
    def stam_outputs(self, memory: torch.Tensor) -> torch.Tensor:
        """Step 2 for each frame alone: ``FloatTensor[T, S, d] -> FloatTensor[T, S, d]``. The
        frames join the pixels on the batch axis, so the attention's sequence is the frame itself
        (length 1: per pixel it reduces to ``out_proj(v_proj(E_b))``)."""
        flat = memory.reshape(1, -1, memory.shape[-1])
        return self.stam(flat, flat, flat).reshape(memory.shape)

    def references(self, stam: torch.Tensor) -> torch.Tensor:
        """R, the correlation's memory, from the STAM outputs ``[T, S, d]`` of a clip or window:
        all of them, or the last frame's ``[1, S, d]`` (the original's Bug, ``stam_last_frame_only``)."""
        return stam[-1:] if self.stam_last_frame_only else stam

    def progress(self, queries: torch.Tensor, memory: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """Steps 3-5 for the frames whose memory is ``queries`` ``FloatTensor[F, S, d]``, given
        the memory of every frame ``FloatTensor[T, S, d]`` and R ``FloatTensor[R, S, d]``: C
        ``FloatTensor[F, S, d]``. Each query frame's C is independent of the others'."""
        attended = self.tfam(queries, memory)
        correlated = self.correlation(attended, references)
        return self.gated_correlation(correlated, memory, queries)

    def decode(self, memory: torch.Tensor, encoded: EncodedMaps) -> Predictions:
        """Step 6: per decoder layer ``{"logits": [F, Q, K], "boxes": [F, Q, 4]}`` (normalised
        cxcywh) of the transformed memory ``FloatTensor[F, S, d]`` laid out as ``encoded``."""
        hidden, boxes, _ = self.transformer.decode(encoded._replace(memory=memory), self.box_heads)
        return self.layer_predictions(hidden, boxes)

    def predict_all(self, encoded: EncodedMaps) -> Predictions:
        """Steps 2-6 for every frame of ``encoded`` (memory ``[T, S, d]``), each against all."""
        memory = encoded.memory
        return self.decode(self.progress(memory, memory, self.references(self.stam_outputs(memory))), encoded)

    # ------------------------------------------------------------------ training
    def predict_clip(self, features: torch.Tensor) -> tuple[Predictions, list[int]]:
        return self.predict_all(self.encode(features)), list(range(len(features)))

    # ------------------------------------------------------------------ online inference
    def frame_item(self, features: torch.Tensor) -> BufferedFrame:
        encoded = self.encode(features)
        return BufferedFrame(encoded, None if self.recompute_window else self.stam_outputs(encoded.memory))

    def predict_window(self, items: list[BufferedFrame], index: int) -> Predictions:
        memory = torch.cat([item.encoded.memory for item in items])
        if self.recompute_window:
            everything = self.predict_all(items[index].encoded._replace(memory=memory))
            return [{key: value[index : index + 1] for key, value in layer.items()} for layer in everything]
        references = self.references(torch.cat([item.stam for item in items]))
        queries = memory[index : index + 1]
        return self.decode(self.progress(queries, memory, references), items[index].encoded)
