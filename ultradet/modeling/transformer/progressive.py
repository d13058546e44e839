"""PTSEFormer's progressive attention blocks (Wang et al., ECCV 2022; the original's
``heads/ptseformer_head.py``, baselines spec 3.4): a plain block (``SimpleDecoderLayerV2``) and a
gated block (``OursDecoderLayerV2``), each stacked twice per module.

Layout, as the original's: ``nn.MultiheadAttention`` sequence-first, fed ``[L, S, d_model]``
tensors, so the **sequence axis is frames** (L of them, or 1) and the S pixels are the batch: pixel
p of a query frame attends to pixel p of the memory frames only. No position codes.
"""

from __future__ import annotations

import torch
from torch import nn

from ultradet.modeling.transformer.layers import FeedForward


class PlainBlock(nn.Module):
    """``x <- LN(x + Attn(x, m, m)); x <- LN(x + FFN(x))`` per pixel along frames
    (``SimpleDecoderLayerV2``, ``ptseformer_head.py:370-446``).

    Shapes: ``x`` ``FloatTensor[L, S, d_model]``, ``memory`` ``FloatTensor[M, S, d_model]`` (the
    same S pixels) -> ``FloatTensor[L, S, d_model]``. Dropout: on the attention weights, on the
    attention output before the residual, and :class:`FeedForward`'s (spec: dropout 0.1; where it
    sits is not in the spec, DETR's layers are the model).
    """

    def __init__(self, *, d_model: int, num_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout)  # sequence-first: frames
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        attended = self.attn(x, memory, memory, need_weights=False)[0]
        return self.ffn(self.norm(x + self.dropout(attended)))


class GatedBlock(nn.Module):
    """``a = Attn(x, m, m); g = sigmoid(W_z [x; m_g] + b_z); x <- (1 - g) m_g + g x;
    x <- LN(x + a); x <- LN(x + FFN(x))`` (``OursDecoderLayerV2``, ``ptseformer_head.py:225-323``).

    The attention's memory ``m`` and the gate's ``m_g`` are the same tensor in STAM (the frame
    itself, sequence length 1); in the gated correlation ``m`` is every frame of the window and
    ``m_g`` the query's own frame (spec 3.4, step 5).

    Shapes: ``x`` ``FloatTensor[L, S, d_model]``, ``memory`` ``FloatTensor[M, S, d_model]``,
    ``gate_memory`` ``FloatTensor[L, S, d_model]`` -> ``FloatTensor[L, S, d_model]``. The gate is
    ``Linear(2 d_model -> d_model)`` on the concatenation [x; m_g] (512 -> 256 in the original).
    """

    def __init__(self, *, d_model: int, num_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout)  # sequence-first: frames
        self.gate = nn.Linear(2 * d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, gate_memory: torch.Tensor) -> torch.Tensor:
        attended = self.attn(x, memory, memory, need_weights=False)[0]
        g = self.gate(torch.cat((x, gate_memory), -1)).sigmoid()
        mixed = (1 - g) * gate_memory + g * x
        return self.ffn(self.norm(mixed + self.dropout(attended)))


class PlainModule(nn.Module):
    """``num_blocks`` :class:`PlainBlock` in turn, all attending to the same memory (the
    original's TFAM ``s_decoder1`` and correlation ``s_decoder2``: 2 blocks).

    Shapes: as :class:`PlainBlock`.
    """

    def __init__(self, *, num_blocks: int, **sizes):
        super().__init__()
        self.blocks = nn.ModuleList(PlainBlock(**sizes) for _ in range(num_blocks))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, memory)
        return x


class GatedModule(nn.Module):
    """``num_blocks`` :class:`GatedBlock` in turn, all with the same memory and gate memory (the
    original's STAM ``corr`` and gated correlation ``our_decoder``: 2 blocks).

    Shapes: as :class:`GatedBlock`.
    """

    def __init__(self, *, num_blocks: int, **sizes):
        super().__init__()
        self.blocks = nn.ModuleList(GatedBlock(**sizes) for _ in range(num_blocks))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, gate_memory: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, memory, gate_memory)
        return x
