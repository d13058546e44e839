"""Negative Temporal Context Aggregation (NTCA), UltraDet (Yu et al., MICCAI 2023, section 2.2;
spec section 3.7 "Aggregation (a)")."""

from __future__ import annotations

import torch
from torch import nn


class NTCALayer(nn.Module):
    """Each RoI vector attends to its own context vectors (the same box pooled on the flow-warped
    maps of the context keyframes): ``x <- LayerNorm(x + Dropout(MHA(x, ctx, ctx)))``.

    No positional or temporal embedding: the output does not depend on the order of the
    context frames.

    Args:
        d_model: RoI vector size, divisible by ``num_heads``.
        num_heads: attention heads (8). dropout: in the attention and on the residual (0.1).
    """

    def __init__(self, *, d_model: int = 256, num_heads: int = 8, dropout: float = 0.1):
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, num_heads, dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``FloatTensor[N, d_model]``, RoI vectors (one query each).
            context: ``FloatTensor[T_ctx, N, d_model]``, ``context[:, i]`` are the keys/values of
                ``x[i]``.

        Returns:
            ``FloatTensor[N, d_model]``.
        """
        # Sequence-first MHA: one query (length 1) and T_ctx keys per RoI; RoIs are the batch.
        aggregated, _ = self.attention(x.unsqueeze(0), context, context, need_weights=False)
        return self.norm(x + self.dropout(aggregated.squeeze(0)))
