"""TransVOD's temporal query encoder as the original builds it (baselines spec 3.2,
``heads/transvod_head.py:211-275``): the decoder states of a set of frames, refined by attention
among each frame's queries and then, slot by slot, across the frames."""

from __future__ import annotations

import torch
from torch import nn

from ultradet.modeling.transformer.layers import FeedForward


class SlotAttention(nn.Module):
    """Multi-head attention along the frame axis within each query slot: slot i of frame t
    attends to slot i of every frame of the set, never to another slot.

    The original calls a sequence-first ``nn.MultiheadAttention`` on ``[T, Q, d]`` tensors
    without transposing them, so its sequence axis is the frames and its batch axis the slots
    (baselines spec 3.2 (b), ``transvod_head.py:211-275``); here the same attention is written on
    purpose. Queries and keys are ``hidden + query_pos``; the query position is the same in every
    frame, so there is no temporal position code (the set is unordered). *Inferred* from the
    spec: the query position is added as in the layer's other attention.

    Shapes: ``hidden``/``query_pos`` ``FloatTensor[T, Q, d_model]`` -> ``FloatTensor[T, Q, d_model]``
    (the attended values, before the residual).
    """

    def __init__(self, *, d_model: int, num_heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)

    def forward(self, hidden: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        # [T, Q, d] -> [Q, T, d]: the slots become the batch, the frames the sequence.
        q = (hidden + query_pos).transpose(0, 1)
        attended = self.attn(q, q, hidden.transpose(0, 1), need_weights=False)[0]
        return attended.transpose(0, 1)


class TemporalQueryEncoderLayer(nn.Module):
    """(a) self-attention among the queries of each frame (q = k = hidden + query_pos), residual,
    LayerNorm; (b) :class:`SlotAttention` across the frames, residual, LayerNorm; (c)
    :class:`FeedForward` (baselines spec 3.2, the original's 256 -> 512 -> 256).

    Shapes: ``hidden``/``query_pos`` ``FloatTensor[T, Q, d_model]`` -> ``FloatTensor[T, Q, d_model]``.
    """

    def __init__(self, *, d_model: int, num_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.slot_attn = SlotAttention(d_model=d_model, num_heads=num_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)

    def forward(self, hidden: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = hidden + query_pos
        hidden = self.norm1(hidden + self.dropout1(self.self_attn(q, q, hidden, need_weights=False)[0]))
        hidden = self.norm2(hidden + self.dropout2(self.slot_attn(hidden, query_pos)))
        return self.ffn(hidden)


class TemporalQueryEncoder(nn.Module):
    """``num_layers`` :class:`TemporalQueryEncoderLayer` in sequence (the original: 2,
    ``QUERY_ENCODER_LAYERS``).

    Shapes: ``hidden`` (the last spatial decoder layer's states of T frames) and ``query_pos``
    ``FloatTensor[T, Q, d_model]`` -> ``FloatTensor[T, Q, d_model]``.
    """

    def __init__(self, *, num_layers: int, d_model: int, num_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            TemporalQueryEncoderLayer(d_model=d_model, num_heads=num_heads, dim_feedforward=dim_feedforward, dropout=dropout)
            for _ in range(num_layers)
        )

    def forward(self, hidden: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            hidden = layer(hidden, query_pos)
        return hidden
