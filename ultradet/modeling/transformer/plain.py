"""DETR's transformer (Carion et al., ECCV 2020, section 3.2 and figure 10; seed spec 1): a
post-norm encoder over the pixels of one map and a post-norm decoder over learned queries, the
position code added to queries and keys of every attention, a final LayerNorm on each decoder
layer's output."""

from __future__ import annotations

import torch
from torch import nn

from ultradet.modeling.transformer.layers import FeedForward, embedding_rows
from ultradet.modeling.transformer.position import sine_position_encoding


class EncoderLayer(nn.Module):
    """Self-attention (q = k = src + pos, v = src), residual, LayerNorm, then :class:`FeedForward`.

    Shapes: ``src``/``pos`` ``FloatTensor[N, S, d_model]`` -> ``FloatTensor[N, S, d_model]``.
    """

    def __init__(self, *, d_model: int, num_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        q = src + pos
        return self.ffn(self.norm(src + self.dropout(self.self_attn(q, q, src, need_weights=False)[0])))


class DecoderLayer(nn.Module):
    """Query self-attention, residual, LayerNorm; cross-attention (q = tgt + query position,
    k = memory + pos, v = memory), residual, LayerNorm; then :class:`FeedForward`.

    Shapes: ``tgt``/``query_pos`` ``FloatTensor[N, Q, d_model]``, ``memory``/``pos``
    ``FloatTensor[N, S, d_model]`` -> ``FloatTensor[N, Q, d_model]``.
    """

    def __init__(self, *, d_model: int, num_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)

    def forward(self, tgt, query_pos, memory, pos) -> torch.Tensor:
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, q, tgt, need_weights=False)[0]))
        attended = self.cross_attn(tgt + query_pos, memory + pos, memory, need_weights=False)[0]
        return self.ffn(self.norm2(tgt + self.dropout2(attended)))


class DETRTransformer(nn.Module):
    """Encoder-decoder of plain DETR on one projected map; the decoder's content starts at zero,
    its ``num_queries`` learned query embeddings act as positions.

    Args:
        d_model, num_heads, dim_feedforward, dropout: layer sizes.
        encoder_layers, decoder_layers: depths.
        num_queries: object queries.
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
        num_queries: int,
    ):
        super().__init__()
        sizes = dict(d_model=d_model, num_heads=num_heads, dim_feedforward=dim_feedforward, dropout=dropout)
        self.encoder = nn.ModuleList(EncoderLayer(**sizes) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(**sizes) for _ in range(decoder_layers))
        self.decoder_norm = nn.LayerNorm(d_model)
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.d_model = d_model
        for p in self.parameters():  # DETR's initialisation of the transformer
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, features: torch.Tensor) -> list[torch.Tensor]:
        """``features``: the projected map ``FloatTensor[N, d_model, H, W]``. Returns the query
        features after each decoder layer (each through the final LayerNorm), first first:
        ``FloatTensor[N, Q, d_model]`` per layer."""
        n, _, h, w = features.shape
        memory = features.flatten(2).transpose(1, 2)
        pos = sine_position_encoding(h, w, num_feats=self.d_model // 2, device=features.device).flatten(1).T[None]
        for layer in self.encoder:
            memory = layer(memory, pos)
        query_pos = embedding_rows(self.query_embed)[None].expand(n, -1, -1)
        tgt = torch.zeros_like(query_pos)
        hidden = []
        for layer in self.decoder:
            tgt = layer(tgt, query_pos, memory, pos)
            hidden.append(self.decoder_norm(tgt))
        return hidden
