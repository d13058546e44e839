"""UltraDet head: BasicDet relation + Negative Temporal Context Aggregation (spec section 3.7)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ultradet.config import ExperimentConfig
from ultradet.modeling.layers.flow import FarnebackFlow, build_flow
from ultradet.modeling.layers.ntca import NTCALayer
from ultradet.modeling.layers.relation import layer_geometry
from ultradet.modeling.layers.warp import warp
from ultradet.modeling.registry import ROI_HEADS
from ultradet.modeling.roi_heads.buffered import BufferedFrame, rows_of, tokens_of
from ultradet.modeling.roi_heads.relation import RelationFrame, RelationROIHeads


@dataclass
class Keyframe:
    """A context keyframe: its ``index`` in the video, its image as the flow estimator reads it
    (``flow_input``: the estimator's ``prepare``, done once per frame) and res4 ``features``
    ``[1, C, h, w]``."""

    index: int
    flow_input: Any
    features: torch.Tensor


@dataclass
class ContextFrame(RelationFrame):
    """A buffered frame (:class:`RelationFrame`) plus its image as the flow estimator reads it
    (``flow_input``, prepared once, for the flow to keyframes that arrive later) and
    ``context``: keyframe index -> context vectors ``[P, d_model]`` (computed once per
    (frame, keyframe))."""

    flow_input: Any
    context: dict[int, torch.Tensor] = field(default_factory=dict)


@ROI_HEADS.register("ntca")
class NTCAROIHeads(RelationROIHeads):
    """UltraDet's RoI head.

    Context vectors: for a frame and a context keyframe, the inverse flow frame -> keyframe warps
    the keyframe's res4 map onto the frame (:func:`warp`), and the frame's boxes are pooled on the
    warped map with the shared RoIAlign + res5 + mean: ``[T_ctx, R, d_model]``.
    Per relation layer: :class:`NTCALayer` (each RoI attends to its own context vectors), then the
    relation layer across the RoIs of all frames; then the Fast R-CNN predictor.

    Training: ``context_frames`` frames are drawn uniformly without replacement from the clip (the
    global torch RNG), shared by all frames, and may be later frames or the frame itself: this
    follows the original (spec 3.7) although test time is causal, so the network also learns from
    "future" context it never sees at test time.

    Test: the FIFO of :class:`BufferedROIHeads` (causal, or with a bounded lookahead of
    ``k = interval_after_test`` frames). Frame counter ``t`` from :meth:`reset`; when
    ``t % context_step == 0`` the arriving frame becomes a keyframe in a FIFO of
    ``context_frames`` (so at ``t = 0`` the context is the frame itself). Every frame of the
    classified frame's window uses the keyframes of the FIFO as it stands after the newest frame
    seen (frame ``t + k`` when frame ``t`` is classified; the last frame of the video in
    :meth:`flush`), so with a lookahead a keyframe after ``t`` may be context of frame ``t``
    (docs/reproduction.md); a context vector per (frame, keyframe) is computed once and cached.

    Temporal ablation (``aggregate_test=False``): the window is the classified frame alone
    (relation over its ``P`` RoIs, :class:`RelationROIHeads`) and each RoI's NTCA context is its
    own pooled RoI vector ``x0`` (``T_ctx = 1``), so NTCA layer ``l`` computes ``LayerNorm(x_l +
    W_o (W_v x0 + b_v) + b_o)`` (attention over one key, weight 1); the context vectors pooled on
    the keyframes' flow-warped maps (``[T_ctx, P, d_model]``) are removed and no flow runs.
    ``x0`` is the context the head computes when the frame is its only keyframe and the flow is
    zero (frame 0 of a video, whose flow to itself is ~0; :func:`warp` of a zero flow is the
    identity up to rounding).

    Args:
        context_frames: context keyframes (2). context_step: frames between keyframes (8).
        flow: a flow estimator (``FLOW_ESTIMATORS``); None = :class:`FarnebackFlow` with the
            default pixel normalisation.
        **kwargs: see :class:`RelationROIHeads`.
    """

    def __init__(self, *, context_frames: int = 2, context_step: int = 8, flow: nn.Module | None = None, **kwargs):
        super().__init__(**kwargs)
        self.flow = flow if flow is not None else FarnebackFlow()
        heads = self.relation.layers[0].num_heads
        self.ntca = nn.ModuleList(NTCALayer(d_model=self.d_model, num_heads=heads) for _ in self.relation.layers)
        self.context_frames = context_frames
        self.context_step = context_step
        self.keyframes: deque[Keyframe] = deque(maxlen=context_frames)
        self.frame_index = 0

    @classmethod
    def config_kwargs(cls, cfg: ExperimentConfig) -> dict[str, Any]:
        ntca = cfg.model.ntca
        return {
            **super().config_kwargs(cfg),
            "context_frames": ntca.context_frames,
            "context_step": ntca.context_step,
            "flow": build_flow(cfg),
        }

    # ------------------------------------------------------------------ shared computation
    def context_vectors(
        self, images: torch.Tensor, boxes: list[torch.Tensor], key_images: torch.Tensor, key_features: torch.Tensor
    ) -> torch.Tensor:
        """Context vectors of every (frame, keyframe) pair.

        Args:
            images: ``FloatTensor[T, 3, H, W]``, normalised frames.
            boxes: T tensors ``FloatTensor[R_t, 4]``, XYXY pixels of those frames.
            key_images: ``FloatTensor[C, 3, H, W]``; key_features: ``FloatTensor[C, ch, h, w]``.

        Returns:
            ``FloatTensor[C, sum_t R_t, d_model]``, RoIs in the frame-major order of ``boxes``.
        """
        prepare = self.flow.prepare
        return self.prepared_context_vectors(prepare(images), boxes, prepare(key_images), key_features, tuple(images.shape[-2:]))

    def prepared_context_vectors(
        self, frames: list, boxes: list[torch.Tensor], keys: list, key_features: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """:meth:`context_vectors` of images already ``prepare``'d for the flow (``frames``,
        ``keys``: one entry per image, of size ``image_size``)."""
        warped = self.warped_keyframes(frames, keys, key_features, image_size)
        vectors = self.box_encoder(warped, self._pair_boxes(boxes, len(keys)))
        return self._by_keyframe(vectors, boxes, len(keys))

    def warped_keyframes(self, frames: list, keys: list, key_features: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Each keyframe's map warped onto each frame by the inverse flow frame -> keyframe
        (``frames``, ``keys``: the images as the flow's ``prepare`` gives them):
        ``FloatTensor[T * C, ch, h, w]``, pair ``p = t * C + c`` (frame t, keyframe c)."""
        pairs = [(frame, key) for frame in frames for key in keys]
        flow, scale = self.flow.pairs(
            [f for f, _ in pairs], [k for _, k in pairs], image_size, tuple(key_features.shape[-2:])
        )
        return warp(key_features.repeat(len(frames), 1, 1, 1), flow, scale)

    @staticmethod
    def _pair_boxes(boxes: list[torch.Tensor], keys: int) -> list[torch.Tensor]:
        """The boxes to pool on each warped map of :meth:`warped_keyframes`: frame t's, C times."""
        return [b for b in boxes for _ in range(keys)]

    def _by_keyframe(self, vectors: torch.Tensor, boxes: list[torch.Tensor], keys: int) -> torch.Tensor:
        """Pair-major pooled vectors ``[sum_t C * R_t, d]`` -> ``[C, sum_t R_t, d]``."""
        per_frame = vectors.split([keys * len(b) for b in boxes])
        return torch.cat([v.view(keys, len(b), self.d_model) for v, b in zip(per_frame, boxes)], dim=1)

    def aggregate(
        self,
        x: torch.Tensor,
        boxes: torch.Tensor,
        context: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        queries: slice | None = None,
        geometry: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """NTCA then relation, per layer. ``x`` ``[N, d]``, ``boxes`` ``[N, 4]``, ``context``
        ``[T_ctx, N, d]``, ``key_mask``/``queries``/``geometry`` as in :class:`RelationLayers`.
        Returns ``[Q, d]`` (``Q = N`` without ``queries``)."""
        geometry = geometry if geometry is not None else layer_geometry(self.relation.layers, boxes, queries)
        last = len(self.ntca) - 1
        for i, (ntca, relation, logits) in enumerate(zip(self.ntca, self.relation.layers, geometry)):
            x = relation(ntca(x, context), key_mask=key_mask, queries=queries if i == last else None, geometry=logits)
        return x

    # ------------------------------------------------------------------ training
    def forward_train(
        self, features: torch.Tensor, proposals: list[dict], targets: list[dict], images: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Losses of one clip; arguments as in :meth:`SingleFrameROIHeads.forward_train`, but
        ``images`` (normalised ``FloatTensor[T, 3, H, W]``) is required for the optical flow.

        Raises:
            ValueError: ``images`` is None.
        """
        if images is None:
            raise ValueError("the ntca head needs the clip's images for optical flow")
        sampled = self.sampler(proposals, targets)
        boxes = [s.boxes for s in sampled]
        chosen = torch.randperm(len(features))[: self.context_frames].to(features.device)
        prepared = self.flow.prepare(images)
        warped = self.warped_keyframes(
            prepared, [prepared[i] for i in chosen.tolist()], features[chosen], tuple(images.shape[-2:])
        )
        # One res5 pass over the RoIs on their own maps and on the warped context maps: a trainable
        # BatchNorm then normalises both with one batch's statistics, which its running statistics
        # estimate for both at test time. (Two passes normalised each with its own batch and fed
        # the running statistics a blend that matched neither.)
        vectors = self.box_encoder(torch.cat([features, warped]), boxes + self._pair_boxes(boxes, len(chosen)))
        own = sum(len(b) for b in boxes)
        x, context = vectors[:own], self._by_keyframe(vectors[own:], boxes, len(chosen))
        is_gt = torch.cat([s.is_gt for s in sampled])
        x = self.aggregate(x, torch.cat(boxes), context, key_mask=~is_gt)
        return self.losses(x, sampled)

    # ------------------------------------------------------------------ online inference
    def reset(self) -> None:
        super().reset()
        self.keyframes.clear()
        self.frame_index = 0

    def buffer(self, features: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor) -> None:
        """Append the current frame (RoI vectors pooled once, ``image`` prepared once for the
        optical flow), make it a keyframe every ``context_step`` frames, and compute the missing
        context vectors of the buffered frames: one batched flow + warp + pooling of the current
        frame against the ``<= context_frames`` keyframes; on a keyframe, also of each older
        buffered frame against the new keyframe. Then the geometric logits of the new frame's
        RoIs (:meth:`RelationROIHeads.cache_geometry`). In the temporal ablation only the RoI
        vectors and the geometric logits: no keyframe, no flow."""
        vectors = self.box_encoder(features, [boxes]).detach()
        if not self.aggregate_test:
            self.history.append(ContextFrame(boxes, vectors, tuple(image.shape[-2:]), None))
            self.cache_geometry()
            return
        flow_input = self.flow.prepare(image)[0]
        self.history.append(ContextFrame(boxes, vectors, tuple(image.shape[-2:]), flow_input))
        if self.frame_index % self.context_step == 0:
            self.keyframes.append(Keyframe(self.frame_index, flow_input, features.detach()))
        self.frame_index += 1
        self._update_context()
        self.cache_geometry()

    def aggregate_window(self, frames: list[BufferedFrame], index: int) -> torch.Tensor:
        """NTCA + relation over the window's tokens with their context vectors of the live
        keyframes (in the temporal ablation: each token's own vector), the last relation layer
        for ``frames[index]`` only."""
        tokens, boxes = tokens_of(frames)
        if self.aggregate_test:
            live = [k.index for k in self.keyframes]
            context = torch.cat([torch.stack([f.context[k] for k in live]) for f in frames], dim=1)
        else:
            context = tokens[None]
        return self.aggregate(tokens, boxes, context, queries=rows_of(frames, index), geometry=self.window_geometry(frames, index))

    def _update_context(self) -> None:
        """Drop context of keyframes that left the FIFO; compute the missing (frame, keyframe)
        context vectors, batching frames that miss the same keyframes."""
        live = {k.index: k for k in self.keyframes}
        groups: dict[tuple[int, ...], list[ContextFrame]] = {}
        for frame in self.history:
            frame.context = {k: v for k, v in frame.context.items() if k in live}
            missing = tuple(k for k in live if k not in frame.context)
            if missing:
                groups.setdefault(missing, []).append(frame)
        for missing, frames in groups.items():
            keys = [live[k] for k in missing]
            vectors = self.prepared_context_vectors(
                [f.flow_input for f in frames],
                [f.boxes for f in frames],
                [k.flow_input for k in keys],
                torch.cat([k.features for k in keys]),
                frames[0].image_size,
            ).detach()
            for frame, chunk in zip(frames, vectors.split([len(f.boxes) for f in frames], dim=1)):
                frame.context.update({k: c for k, c in zip(missing, chunk)})
