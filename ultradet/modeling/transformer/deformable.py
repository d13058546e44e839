"""Deformable DETR's transformer (Zhu et al., ICLR 2021, sections 4.1-4.2; the original's
``heads/deformable_transformer.py``, baselines spec 3.1): multi-scale deformable self-attention in
the encoder, query self-attention plus deformable cross-attention in the decoder, and iterative
box refinement of the queries' reference points."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from ultradet.modeling.layers.ms_deform_attn import MSDeformAttn
from ultradet.modeling.transformer.layers import FeedForward, embedding_rows
from ultradet.modeling.transformer.position import sine_position_encoding


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with ``x`` clamped to [0, 1] and both terms to >= ``eps``, so a box
    coordinate of exactly 0 or 1 maps to a finite logit (the original's ``inverse_sigmoid``)."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def refine_boxes(delta: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """A box head's output ``FloatTensor[..., 4]`` (deltas in logit space) applied to its
    reference ``FloatTensor[..., 2 or 4]`` (normalised): ``sigmoid(delta + inverse_sigmoid(ref))``
    on (cx, cy, w, h), or on (cx, cy) only with ``w, h = sigmoid(delta)`` for a 2-d reference
    (Deformable DETR, appendix A.4)."""
    logit = inverse_sigmoid(reference)
    if reference.shape[-1] == 4:
        return (delta + logit).sigmoid()
    return torch.cat((delta[..., :2] + logit, delta[..., 2:]), -1).sigmoid()


class EncodedMaps(NamedTuple):
    """The encoder's output for a batch of frames: ``memory`` ``FloatTensor[N, S, d_model]`` (S
    pixels of all levels, row-major), ``shapes`` ``LongTensor[L, 2]`` (H, W per level),
    ``starts`` ``LongTensor[L]`` (each level's offset in S)."""

    memory: torch.Tensor
    shapes: torch.Tensor
    starts: torch.Tensor


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention over every pixel of every level (reference = the pixel's own
    centre), residual, LayerNorm, then :class:`FeedForward`.

    Shapes: ``src``/``pos`` ``FloatTensor[N, S, d_model]`` (S pixels of all levels),
    ``reference_points`` ``FloatTensor[N, S, L, 2]`` normalised (x, y) -> ``FloatTensor[N, S, d_model]``.
    """

    def __init__(self, *, d_model: int, num_heads: int, dim_feedforward: int, dropout: float, num_levels: int, num_points: int):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model=d_model, n_levels=num_levels, n_heads=num_heads, n_points=num_points)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index) -> torch.Tensor:
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index)
        return self.ffn(self.norm(src + self.dropout(attended)))


class DeformableDecoderLayer(nn.Module):
    """Query self-attention (q = k = content + query position), residual, LayerNorm; deformable
    cross-attention into the encoder memory around each query's reference, residual, LayerNorm;
    then :class:`FeedForward` (``deformable_transformer.py:328-393`` of the original).

    Shapes: ``tgt``/``query_pos`` ``FloatTensor[N, Q, d_model]``, ``reference_points``
    ``FloatTensor[N, Q, L, 2 or 4]`` normalised, ``memory`` ``FloatTensor[N, S, d_model]``
    -> ``FloatTensor[N, Q, d_model]``.
    """

    def __init__(self, *, d_model: int, num_heads: int, dim_feedforward: int, dropout: float, num_levels: int, num_points: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn(d_model=d_model, n_levels=num_levels, n_heads=num_heads, n_points=num_points)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)

    def forward(self, tgt, query_pos, reference_points, memory, spatial_shapes, level_start_index) -> torch.Tensor:
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, q, tgt, need_weights=False)[0]))
        attended = self.cross_attn(tgt + query_pos, reference_points, memory, spatial_shapes, level_start_index)
        return self.ffn(self.norm2(tgt + self.dropout2(attended)))


class DeformableTransformer(nn.Module):
    """Encoder over the flattened feature maps, decoder over ``num_queries`` learned queries.

    Queries: an ``Embedding(num_queries, 2 * d_model)`` split into the query position (first half)
    and the initial content (second half); the first references are ``sigmoid(Linear(query
    position))``, normalised (x, y). With box heads given to :meth:`forward`, layer ``l``'s boxes
    are ``sigmoid(box_head_l(h_l) + inverse_sigmoid(reference_l))`` (only x, y added while the
    reference is 2-d) and, with ``box_refine``, become layer ``l + 1``'s (detached) 4-d reference
    (Deformable DETR, section 4.2 and appendix A.4).

    Args:
        d_model, num_heads, dim_feedforward, dropout: layer sizes (baselines spec 3.1: 256, 8, 512, 0.1).
        encoder_layers, decoder_layers: depths (2 and 4).
        num_levels, num_points: feature levels and sampling points per head and level (1 and 4).
        num_queries: object queries (16).
        box_refine: iterative box refinement.
    """

    def __init__(
        self,
        *,
        d_model: int,
        num_heads: int,
        encoder_layers: int,
        decoder_layers: int,
        dim_feedforward: int,
        dropout: float,
        num_levels: int,
        num_points: int,
        num_queries: int,
        box_refine: bool,
    ):
        super().__init__()
        sizes = dict(
            d_model=d_model, num_heads=num_heads, dim_feedforward=dim_feedforward, dropout=dropout,
            num_levels=num_levels, num_points=num_points,
        )
        self.encoder = nn.ModuleList(DeformableEncoderLayer(**sizes) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DeformableDecoderLayer(**sizes) for _ in range(decoder_layers))
        self.level_embed = nn.Parameter(torch.empty(num_levels, d_model))
        self.query_embed = nn.Embedding(num_queries, 2 * d_model)
        self.reference_points = nn.Linear(d_model, 2)
        self.d_model, self.num_levels, self.box_refine = d_model, num_levels, box_refine
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """The original's: Xavier-uniform on every matrix, then each deformable attention's own
        initialisation, Xavier references with zero bias and a normal level embedding."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module._reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight)
        nn.init.zeros_(self.reference_points.bias)
        nn.init.normal_(self.level_embed)

    def forward(self, maps: Sequence[torch.Tensor], box_heads: Sequence[nn.Module]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Decode the queries of a batch of frames.

        Args:
            maps: ``num_levels`` projected maps ``FloatTensor[N, d_model, H_l, W_l]``.
            box_heads: one per decoder layer, ``FloatTensor[N, Q, d_model] -> FloatTensor[N, Q, 4]``
                box deltas in logit space (the same module repeated when not refining).

        Returns:
            ``(hidden, boxes)``: per decoder layer, first first, the query features
            ``FloatTensor[N, Q, d_model]`` and boxes ``FloatTensor[N, Q, 4]``, normalised
            (cx, cy, w, h) of the input frame, differentiable.

        Raises:
            ValueError: the number of maps or box heads does not match the configuration.
        """
        hidden, boxes, _ = self.decode(self.encode(maps), box_heads)
        return hidden, boxes

    def decode(
        self, encoded: EncodedMaps, box_heads: Sequence[nn.Module]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """The decoder half of :meth:`forward` on an :meth:`encode` output (the video DETRs
        transform the memory in between, baselines spec 3.2-3.4).

        Returns:
            ``(hidden, boxes, query_pos)``: ``hidden`` and ``boxes`` as :meth:`forward`; the
            query position ``FloatTensor[N, Q, d_model]`` the decoder used.

        Raises:
            ValueError: the number of box heads is not the number of decoder layers.
        """
        if len(box_heads) != len(self.decoder):
            raise ValueError(f"expected {len(self.decoder)} box heads, got {len(box_heads)}")
        n = encoded.memory.shape[0]
        query_pos, tgt = embedding_rows(self.query_embed).split(self.d_model, dim=1)
        query_pos, tgt = query_pos.expand(n, -1, -1), tgt.expand(n, -1, -1)
        reference = self.reference_points(query_pos).sigmoid()
        hidden, boxes = [], []
        for layer, box_head in zip(self.decoder, box_heads):
            tgt = layer(tgt, query_pos, self.level_references(reference), encoded.memory, encoded.shapes, encoded.starts)
            box = refine_boxes(box_head(tgt), reference)
            hidden.append(tgt)
            boxes.append(box)
            if self.box_refine:
                reference = box.detach()
        return hidden, boxes, query_pos

    def level_references(self, reference: torch.Tensor) -> torch.Tensor:
        """``FloatTensor[N, Q, 2 or 4]`` -> the same reference on every level ``FloatTensor[N, Q, L, 2 or 4]``."""
        return reference[:, :, None].expand(-1, -1, self.num_levels, -1)

    def encode(self, maps: Sequence[torch.Tensor]) -> EncodedMaps:
        """The encoder memory of the flattened maps (``num_levels`` ``FloatTensor[N, d_model,
        H_l, W_l]``), with the level shapes and offsets the deformable attentions read.

        Raises:
            ValueError: the number of maps does not match the configuration.
        """
        if len(maps) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} maps, got {len(maps)}")
        device = maps[0].device
        shapes = torch.tensor([m.shape[-2:] for m in maps], dtype=torch.long, device=device)
        starts = torch.cat((shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]))
        src = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)
        pos = torch.cat(
            [
                (sine_position_encoding(h, w, num_feats=self.d_model // 2, device=device).flatten(1).T + self.level_embed[level])
                for level, (h, w) in enumerate(shapes.tolist())
            ]
        )[None]
        reference = _pixel_centres(shapes.tolist(), device)[None, :, None].expand(src.shape[0], -1, self.num_levels, -1)
        for layer in self.encoder:
            src = layer(src, pos, reference, shapes, starts)
        return EncodedMaps(src, shapes, starts)


def _pixel_centres(shapes: list[list[int]], device: torch.device) -> torch.Tensor:
    """Normalised (x, y) centres of every pixel of every level, row-major: ``FloatTensor[S, 2]``."""
    centres = []
    for h, w in shapes:
        y, x = torch.meshgrid(
            (torch.arange(h, device=device) + 0.5) / h, (torch.arange(w, device=device) + 0.5) / w, indexing="ij"
        )
        centres.append(torch.stack((x.flatten(), y.flatten()), -1))
    return torch.cat(centres)
