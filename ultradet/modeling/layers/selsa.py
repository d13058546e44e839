"""SELSA attention over the RoIs of several frames (Wu et al., "Sequence Level Semantics
Aggregation for Video Object Detection", ICCV 2019, section 3.2, eq. 3-4), as the UltraDet
repository's SELSA baseline builds it (baselines spec 1.4)."""

from __future__ import annotations

import math

import torch
from torch import nn

_MASKED = -1e9
TRANSFORM_INITS = ("normal", "identity")


class SELSALayer(nn.Module):
    """One single-head semantic-similarity aggregation layer (baselines spec 1.4)::

        A = softmax_k((X W_q + b_q)(X_k W_k + b_k)^T / sqrt(d_model))
        Y = (X W + b) + W_o (A (X_k W_v + b_v)) + b_o

    One head, no geometry term, no identity residual, no normalisation. ``W_q, W_k, W_v`` start
    at N(0, 0.01^2) with zero biases; the output projection ``W_o`` (the original's 1x1 conv on a
    vector) keeps PyTorch's default init.

    The transform ``W`` starts as the original's (``transform_init="normal"``: N(0, 0.01^2), zero
    bias) or as the identity (``"identity"``: ``W = I``, ``b = 0``; a departure from the original
    for fine-tuning only, docs/reproduction.md). The original starts from ImageNet weights, so
    its predictor learns on the layers' output from the start. Inserted into a pretrained
    detector (``model.weights``), the normal start feeds that detector's predictor
    ``XW`` (about 1/8 of ``|X|`` per layer at d_model 128, in a random direction) plus a term
    that is the same for every RoI (``A`` is near uniform at this init): the predictor sees no
    information and must be learned again. ``W = I`` keeps the architecture and starts from
    ``Y = X + W_o(AV)``, the pretrained vector plus the aggregation, the start of the relation
    layers (``x + R(x)``) that fine-tune from the same detector.

    Args:
        d_model: token size (256).
        transform_init: ``"normal"`` (the original) or ``"identity"``.

    Raises:
        ValueError: an unknown ``transform_init``.
    """

    def __init__(self, *, d_model: int = 256, transform_init: str = "normal"):
        super().__init__()
        if transform_init not in TRANSFORM_INITS:
            raise ValueError(f"transform_init must be one of {TRANSFORM_INITS}, got {transform_init!r}")
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.transform = nn.Linear(d_model, d_model)
        self.output = nn.Linear(d_model, d_model)
        for layer in (self.query, self.key, self.value, self.transform):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)
        if transform_init == "identity":
            nn.init.eye_(self.transform.weight)

    def attention(self, x: torch.Tensor, key_mask: torch.Tensor | None = None, queries=None) -> torch.Tensor:
        """``FloatTensor[Q, N]`` attention weights ``A`` of the query tokens ``x[queries]`` over
        all ``N`` tokens (zero on masked keys); arguments as :meth:`forward`."""
        xq = x if queries is None else x[queries]
        logits = self.query(xq) @ self.key(x).T / math.sqrt(x.shape[-1])
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask, _MASKED)
        return logits.softmax(dim=-1)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None, queries: torch.Tensor | slice | None = None
    ) -> torch.Tensor:
        """
        Args:
            x: ``FloatTensor[N, d_model]``, every token (all are keys / values).
            key_mask: ``BoolTensor[N]``, False = never attended to (GT-appended boxes); None = all.
            queries: index of the tokens to update; None = all.

        Returns:
            ``FloatTensor[Q, d_model]`` (``Q = N`` without ``queries``).
        """
        xq = x if queries is None else x[queries]
        return self.transform(xq) + self.output(self.attention(x, key_mask, queries) @ self.value(x))


class SELSALayers(nn.Module):
    """``num_layers`` stacked :class:`SELSALayer` with nothing in between (the original creates a
    ReLU but never applies it, baselines spec 1.4).

    Args:
        d_model: token size. num_layers: layers (2, ``SELSA_LAYER_NUMS``).
        transform_init: the start of every layer's transform (:class:`SELSALayer`).
    """

    def __init__(self, *, d_model: int = 256, num_layers: int = 2, transform_init: str = "normal"):
        super().__init__()
        self.layers = nn.ModuleList(
            SELSALayer(d_model=d_model, transform_init=transform_init) for _ in range(num_layers)
        )

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None, queries: torch.Tensor | slice | None = None
    ) -> torch.Tensor:
        """As :meth:`SELSALayer.forward`; earlier layers update every token (they are the next
        layer's keys), the last only ``queries``."""
        for i, layer in enumerate(self.layers):
            x = layer(x, key_mask, queries if i == len(self.layers) - 1 else None)
        return x
