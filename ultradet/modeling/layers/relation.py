"""Object relation module over RoIs of several frames (spec section 3.5).

Sources: Hu et al., "Relation Networks for Object Detection", CVPR 2018 (section 3, eq. 2-5: the
appearance/geometry attention and the sinusoidal box-pair embedding); Deng et al., "Relation
Distillation Networks for Video Object Detection", ICCV 2019 (relation across frames, used by
BasicDet); the UltraDet variant as written down in spec 3.5 (ReLU on q, k, v and on the output,
``x <- x + R(x)``, no LayerNorm, GT boxes masked as keys).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-4
_GEO_EPS = 1e-6
_MASKED = -1e9


def geometric_embedding(boxes_q: torch.Tensor, boxes_k: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of every (query box, key box) pair.

    For query ``q`` and key ``k`` (centres ``cx, cy``, sizes ``w, h`` clamped to >= ``EPS``)::

        g = [log(|cx_k - cx_q| / w_k + EPS), log(|cy_k - cy_q| / h_k + EPS),
             log(w_q / w_k + EPS),           log(h_q / h_k + EPS)]

    each of the 4 values is multiplied by ``100 / 1000^(i / (dim/8))``, ``i = 0 .. dim/8 - 1``,
    giving ``angles`` of length ``4 * dim/8`` ordered coordinate-major
    (``[g0*f0, g0*f1, ..., g3*f_{dim/8-1}]``); the embedding is ``concat(sin(angles), cos(angles))``.

    Args:
        boxes_q: ``FloatTensor[Q, 4]``; boxes_k: ``FloatTensor[K, 4]``; XYXY pixels.
        dim: embedding size, a multiple of 8 (``d_model``).

    Returns:
        ``FloatTensor[Q, K, dim]``.

    Raises:
        ValueError: ``dim`` is not a positive multiple of 8.
    """
    if dim <= 0 or dim % 8:
        raise ValueError(f"geometric embedding size must be a positive multiple of 8, got {dim}")
    cq, sq = _centres_sizes(boxes_q)
    ck, sk = _centres_sizes(boxes_k)
    offsets = torch.log((ck[None] - cq[:, None]).abs() / sk[None] + EPS)  # [Q, K, 2]
    ratios = torch.log(sq[:, None] / sk[None] + EPS)  # [Q, K, 2]
    position = torch.cat([offsets, ratios], dim=-1)  # [Q, K, 4]
    steps = dim // 8
    freqs = 100.0 / 1000.0 ** (torch.arange(steps, device=position.device, dtype=position.dtype) / steps)
    angles = (position[..., None] * freqs).flatten(-2)  # [Q, K, 4 * steps]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _centres_sizes(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sizes = (boxes[:, 2:] - boxes[:, :2]).clamp(min=EPS)
    return boxes[:, :2] + 0.5 * sizes, sizes


class RelationModule(nn.Module):
    """One relation layer ``x <- x + R(x)`` (spec 3.5).

    Inside ``R``, per head ``m`` of sub-dimension ``s = d_model / num_heads``::

        q, k, v = ReLU(W_q x), ReLU(W_k x), ReLU(W_v x)
        logits[i, j] = log(ReLU(W_g^m emb[i, j]) + 1e-6) + q_i . k_j / sqrt(s)    (-1e9 if j masked)
        R(x)_i = ReLU(W_o concat_m(softmax_j(logits[i, :]) @ v))

    Args:
        d_model: token size, divisible by ``num_heads`` and by 8.
        num_heads: attention heads (8).

    Raises:
        ValueError: ``d_model`` not divisible by ``num_heads`` or by 8.
    """

    def __init__(self, *, d_model: int = 256, num_heads: int = 8):
        super().__init__()
        if d_model % num_heads or d_model % 8:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads}) and by 8")
        self.num_heads = num_heads
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(d_model, d_model)
        self.value = nn.Linear(d_model, d_model)
        self.geometry = nn.Linear(d_model, num_heads)
        self.output = nn.Linear(d_model, d_model)

    def geometry_logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """The geometric term of the attention logits, ``log(ReLU(W_g^m emb[i, j]) + 1e-6)``.

        Args:
            embedding: ``FloatTensor[Q, K, d_model]`` (:func:`geometric_embedding`).

        Returns:
            ``FloatTensor[heads, Q, K]``. Each entry depends only on its own box pair, so a caller
            that sees the same boxes again (a sliding test-time window) may keep them.
        """
        return torch.log(F.relu(self.geometry(embedding)).permute(2, 0, 1) + _GEO_EPS)

    def forward(
        self,
        x: torch.Tensor,
        embedding: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        queries: torch.Tensor | slice | None = None,
        *,
        geometry: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            x: ``FloatTensor[N, d_model]``, all tokens (every token is a key).
            embedding: ``FloatTensor[N, N, d_model]``, :func:`geometric_embedding` of the tokens'
                boxes with themselves; not needed with ``geometry``.
            key_mask: ``BoolTensor[N]``, False for tokens that must not be attended to; None = all.
            queries: index of the tokens to update (e.g. only the current frame at test time);
                None = all.
            geometry: ``FloatTensor[heads, Q, N]``, :meth:`geometry_logits` of the query rows,
                when the caller already has them (else computed from ``embedding``).

        Returns:
            ``FloatTensor[Q, d_model]``: ``x[queries] + R(x)[queries]`` (``Q = N`` if no ``queries``).
        """
        xq = x if queries is None else x[queries]
        if geometry is None:
            geometry = self.geometry_logits(embedding if queries is None else embedding[queries])  # [heads, Q, N]
        q = self._split(F.relu(self.query(xq)))  # [heads, Q, s]
        k = self._split(F.relu(self.key(x)))  # [heads, N, s]
        v = self._split(F.relu(self.value(x)))
        appearance = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # [heads, Q, N]
        logits = geometry + appearance
        if key_mask is not None:
            logits = logits.masked_fill(~key_mask, _MASKED)
        relation = (logits.softmax(dim=-1) @ v).transpose(0, 1).flatten(1)  # [Q, d_model]
        return xq + F.relu(self.output(relation))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], self.num_heads, x.shape[1] // self.num_heads).transpose(0, 1)


class RelationLayers(nn.Module):
    """``num_layers`` stacked :class:`RelationModule` over the RoIs of all frames.

    Args:
        d_model: token size. num_layers: layers (2). num_heads: heads per layer (8).
    """

    def __init__(self, *, d_model: int = 256, num_layers: int = 2, num_heads: int = 8):
        super().__init__()
        self.layers = nn.ModuleList(RelationModule(d_model=d_model, num_heads=num_heads) for _ in range(num_layers))
        self.d_model = d_model

    def forward(
        self,
        x: torch.Tensor,
        boxes: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        queries: torch.Tensor | slice | None = None,
        *,
        geometry: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """
        Args:
            x: ``FloatTensor[N, d_model]``, RoI vectors of all frames.
            boxes: ``FloatTensor[N, 4]``, their boxes (XYXY pixels).
            key_mask: ``BoolTensor[N]``, False = never attended to (GT-appended boxes); None = all.
            queries: tokens whose output is wanted. The last layer updates only these (earlier
                layers must update every token, since all of them are keys of the next layer).
            geometry: per layer, its :meth:`RelationModule.geometry_logits` of the rows it
                updates (:func:`layer_geometry`), when the caller keeps them; else computed.

        Returns:
            ``FloatTensor[Q, d_model]`` (``Q = N`` without ``queries``).
        """
        geometry = geometry if geometry is not None else layer_geometry(self.layers, boxes, queries)
        last = len(self.layers) - 1
        for i, (layer, logits) in enumerate(zip(self.layers, geometry)):
            x = layer(x, key_mask=key_mask, queries=queries if i == last else None, geometry=logits)
        return x


def layer_geometry(
    layers: nn.ModuleList, boxes: torch.Tensor, queries: torch.Tensor | slice | None = None
) -> list[torch.Tensor]:
    """Each :class:`RelationModule`'s geometric logits over ``boxes`` (``FloatTensor[N, 4]``):
    ``[heads, N, N]`` for every layer but the last, whose rows are only ``queries``'
    (``[heads, Q, N]``), as the layers of a stack update every token but the last."""
    embedding = geometric_embedding(boxes, boxes, layers[0].query.in_features)
    last = len(layers) - 1
    rows = embedding if queries is None else embedding[queries]
    return [layer.geometry_logits(rows if i == last else embedding) for i, layer in enumerate(layers)]
