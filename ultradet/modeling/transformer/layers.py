"""Layers both transformers share: the post-norm feed-forward block and the box MLP."""

from __future__ import annotations

import torch
from torch import nn


class FeedForward(nn.Module):
    """``x -> LayerNorm(x + Dropout(Linear(Dropout(ReLU(Linear(x))))))``: the post-norm FFN block
    of DETR's and Deformable DETR's layers (Vaswani et al. 2017, section 3.3).

    Shapes: ``FloatTensor[..., d_model] -> FloatTensor[..., d_model]``.
    """

    def __init__(self, *, d_model: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout2(self.linear2(self.dropout1(self.linear1(x).relu()))))


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (DETR's box head: 3 layers, the last
    giving the 4 box values before the sigmoid).

    Shapes: ``FloatTensor[..., in_dim] -> FloatTensor[..., out_dim]``.
    """

    def __init__(self, *, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else layer(x).relu()
        return x


def embedding_rows(embedding: nn.Embedding) -> torch.Tensor:
    """Every row of ``embedding`` (``FloatTensor[num_embeddings, dim]``), looked up rather than
    a view of its weight: under ``no_grad`` a view of a parameter still requires grad without a
    grad_fn, which autograd hooks (e.g. the FLOP counter's module tracker) reject."""
    return embedding(torch.arange(embedding.num_embeddings, device=embedding.weight.device))
