"""Multi-scale deformable attention in pure PyTorch (Deformable DETR, Zhu et al., ICLR 2021,
eq. 2 and 3; baselines spec 3.1 "MSDeformAttn" and 4 "Multi-scale deformable attention").

The original calls a compiled CUDA extension whose CPU entry points raise "not implemented"
(spec 4). Here the sampling is ``torch.nn.functional.grid_sample`` (bilinear, zero padding,
``align_corners=False``), one call per feature level, as the original's reference
``ms_deform_attn_core_pytorch``: the same numbers as its kernel, differentiable by autograd,
and the same code on CPU and GPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn_sample(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """The attention-weighted sum of bilinearly sampled values (the inner sums of eq. 3).

    ``out[n, q, m*D:(m+1)*D] = sum_{l, p} attention_weights[n, q, m, l, p]
    * value_l[n, :, m](sampling_locations[n, q, m, l, p])``, where ``value_l`` is level ``l``'s
    map and a location is read by bilinear interpolation between pixel centres, zero outside
    the map (``grid_sample``, ``align_corners=False``, grid = 2 * location - 1; baselines
    spec 4).

    Args:
        value: ``FloatTensor[N, S, M, D]``, the projected values of every level, each level's
            ``H_l * W_l`` pixels flattened row-major, levels in order (``S = sum H_l * W_l``);
            ``M`` heads of ``D`` channels.
        spatial_shapes: ``LongTensor[L, 2]``, ``(H_l, W_l)`` of each level in pixels.
        sampling_locations: ``FloatTensor[N, Lq, M, L, P, 2]``, ``(x, y)`` normalised to each
            level's map: 0 = its left/top edge, 1 = its right/bottom edge (pixel ``j``'s centre
            is at ``(j + 0.5) / W_l``). Points outside ``[0, 1]`` read zero padding.
        attention_weights: ``FloatTensor[N, Lq, M, L, P]``, already normalised (softmax over
            ``L * P`` per head); not checked.

    Returns:
        ``FloatTensor[N, Lq, M * D]``, head ``m``'s channels at ``m * D ... (m + 1) * D - 1``.

    Raises:
        ValueError: if the shapes disagree (``S`` vs ``spatial_shapes``, ``N``, ``M``, ``L``,
            ``Lq``, ``P`` between the arguments).
    """
    shapes = _level_shapes(value, spatial_shapes, sampling_locations, attention_weights)
    n, _, m, d = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    levels = value.split([h * w for h, w in shapes], dim=1)
    # grid_sample reads [-1, 1] across the map's outer edges when align_corners=False.
    grids = 2.0 * sampling_locations - 1.0
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # One image per (frame, head): [N, H*W, M, D] -> [N*M, D, H, W].
        maps = levels[level].permute(0, 2, 3, 1).reshape(n * m, d, h, w)
        # The query's points form the output "image": [N, Lq, M, P, 2] -> [N*M, Lq, P, 2].
        grid = grids[:, :, :, level].transpose(1, 2).reshape(n * m, lq, n_points, 2)
        # [N*M, D, Lq, P]: D channels read at each of the query's points.
        sampled.append(F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(sampled, dim=-2)  # [N*M, D, Lq, L, P]
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, n_levels, n_points)
    out = (stacked * weights).sum(dim=(-2, -1))  # [N*M, D, Lq]
    return out.view(n, m * d, lq).transpose(1, 2).contiguous()


def _level_shapes(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> list[tuple[int, int]]:
    """``(H_l, W_l)`` of each level as Python ints, after checking the sampler's argument shapes."""
    if value.dim() != 4:
        raise ValueError(f"value must be [N, S, M, D], got shape {tuple(value.shape)}")
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"spatial_shapes must be [L, 2] of (H, W), got shape {tuple(spatial_shapes.shape)}")
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    if any(h < 1 or w < 1 for h, w in shapes):
        raise ValueError(f"spatial_shapes must be positive, got {shapes}")
    n, s, m, _ = value.shape
    tokens = sum(h * w for h, w in shapes)
    if tokens != s:
        raise ValueError(f"value has S={s} tokens but spatial_shapes {shapes} sum to {tokens}")
    loc_shape = tuple(sampling_locations.shape)
    if len(loc_shape) != 6 or loc_shape[-1] != 2 or (loc_shape[0], loc_shape[2], loc_shape[3]) != (n, m, len(shapes)):
        raise ValueError(f"sampling_locations must be [N={n}, Lq, M={m}, L={len(shapes)}, P, 2], got shape {loc_shape}")
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            f"attention_weights must be {tuple(sampling_locations.shape[:-1])} (sampling_locations without its last "
            f"axis), got {tuple(attention_weights.shape)}"
        )
    return shapes


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (Deformable DETR eq. 3; baselines spec 3.1).

    Each query attends, per head ``m`` and level ``l``, to ``P`` points around its reference
    point: ``sum_m W_m [sum_l sum_p A_mlqp W'_m x_l(ref + offset_mlqp)]`` with ``W'`` =
    ``value_proj``, ``W`` = ``output_proj``, offsets from ``sampling_offsets(query)`` and
    weights ``A`` = softmax over ``L * P`` of ``attention_weights(query)`` per head.

    Submodules (names kept from the original: the solver gives ``sampling_offsets`` a 0.1 lr
    multiplier by name): ``sampling_offsets`` Linear(C -> M*L*P*2), ``attention_weights``
    Linear(C -> M*L*P), ``value_proj`` and ``output_proj`` Linear(C -> C).

    Args:
        d_model: channels ``C`` of queries, values and output (a multiple of ``n_heads``).
        n_levels: feature levels ``L``.
        n_heads: attention heads ``M``.
        n_points: sampling points ``P`` per head and level.

    Raises:
        ValueError: if ``d_model`` is not a multiple of ``n_heads`` or a count is below 1.
    """

    def __init__(self, *, d_model: int = 256, n_levels: int = 1, n_heads: int = 8, n_points: int = 4):
        super().__init__()
        if min(d_model, n_levels, n_heads, n_points) < 1:
            counts = dict(d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
            raise ValueError(f"every count must be >= 1, got {counts}")
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """The original's initialisation (spec 3.1): offsets start as ``M`` fixed directions.

        ``sampling_offsets``: zero weight; bias of head ``h`` = the direction of angle
        ``2 pi h / M`` scaled so that its larger component is +-1 (a square ring: (1, 0),
        (1, 1), (0, 1), ... for ``M = 8``), the same on every level and multiplied by the point
        index ``1 ... P``, in pixels of the level. ``attention_weights``: zero weight and bias
        (uniform ``1 / (L * P)`` at the start). ``value_proj``, ``output_proj``: Xavier-uniform
        weight, zero bias.
        """
        angles = torch.arange(self.n_heads, dtype=torch.float64) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)
        directions = directions / directions.abs().amax(dim=-1, keepdim=True)
        scale = torch.arange(1, self.n_points + 1, dtype=torch.float64).view(1, 1, -1, 1)
        bias = directions.view(self.n_heads, 1, 1, 2) * scale  # [M, 1, P, 2]
        bias = bias.expand(self.n_heads, self.n_levels, self.n_points, 2)
        with torch.no_grad():
            nn.init.zeros_(self.sampling_offsets.weight)
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        input_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from every query to its sampling points.

        Args:
            query: ``FloatTensor[N, Lq, C]`` (content plus position embedding).
            reference_points: ``FloatTensor[N, Lq, L, 2]``, ``(x, y)`` normalised to each
                level's map (0 = left/top edge, 1 = right/bottom edge); sampling location =
                ``ref + offset / (W_l, H_l)``, offsets in pixels of level ``l``. Or
                ``FloatTensor[N, Lq, L, 4]``, boxes ``(cx, cy, w, h)`` normalised the same way;
                location = ``ref_xy + offset / P * ref_wh * 0.5`` (Deformable DETR appendix
                A.4: refinement and two-stage).
            input_flatten: ``FloatTensor[N, S, C]``, every level's map flattened row-major,
                levels in order (``S = sum H_l * W_l``).
            spatial_shapes: ``LongTensor[L, 2]``, ``(H_l, W_l)`` in pixels.
            level_start_index: ``LongTensor[L]``, index in ``S`` of each level's first pixel
                (``0, H_0 W_0, ...``; the original's kernel reads it, here it is only checked).
            input_padding_mask: ``BoolTensor[N, S]``, True = padding (its values are zeroed),
                or None.

        Returns:
            ``FloatTensor[N, Lq, C]``.

        Raises:
            ValueError: on shapes that disagree with each other or with the module, a
                ``reference_points`` last axis other than 2 or 4, or a ``level_start_index``
                that is not the levels' cumulative sizes.
        """
        self._check_inputs(query, reference_points, input_flatten, spatial_shapes, level_start_index,
                           input_padding_mask)
        n, lq, _ = query.shape
        m, n_levels, n_points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, input_flatten.shape[1], m, self.d_model // m)
        offsets = self.sampling_offsets(query).view(n, lq, m, n_levels, n_points, 2)
        weights = self.attention_weights(query).view(n, lq, m, n_levels * n_points).softmax(dim=-1)
        locations = self._sampling_locations(reference_points, offsets, spatial_shapes)
        out = ms_deform_attn_sample(value, spatial_shapes, locations, weights.view(n, lq, m, n_levels, n_points))
        return self.output_proj(out)

    def _sampling_locations(
        self, reference_points: torch.Tensor, offsets: torch.Tensor, spatial_shapes: torch.Tensor
    ) -> torch.Tensor:
        """``FloatTensor[N, Lq, M, L, P, 2]`` normalised ``(x, y)`` from references
        ``[N, Lq, L, 2 or 4]`` and offsets ``[N, Lq, M, L, P, 2]`` (pixels of each level)."""
        ref = reference_points[:, :, None, :, None, :]  # broadcast over heads and points
        if reference_points.shape[-1] == 2:
            # (W_l, H_l): an offset of one pixel moves 1 / W_l in normalised x.
            size_xy = spatial_shapes.flip(-1).to(offsets.dtype)[None, None, None, :, None, :]
            return ref + offsets / size_xy
        return ref[..., :2] + offsets / self.n_points * ref[..., 2:] * 0.5

    def _check_inputs(self, query, reference_points, input_flatten, spatial_shapes, level_start_index,
                      input_padding_mask) -> None:
        """ValueError naming the first argument whose shape disagrees (see :meth:`forward`)."""
        c, n_levels = self.d_model, self.n_levels
        if query.dim() != 3 or query.shape[-1] != c:
            raise ValueError(f"query must be [N, Lq, {c}], got shape {tuple(query.shape)}")
        n, lq, _ = query.shape
        if input_flatten.dim() != 3 or input_flatten.shape[0] != n or input_flatten.shape[-1] != c:
            raise ValueError(f"input_flatten must be [N={n}, S, {c}], got shape {tuple(input_flatten.shape)}")
        if spatial_shapes.shape != (n_levels, 2):
            raise ValueError(f"spatial_shapes must be [L={n_levels}, 2], got shape {tuple(spatial_shapes.shape)}")
        ref_shape = tuple(reference_points.shape)
        if len(ref_shape) != 4 or ref_shape[-1] not in (2, 4):
            raise ValueError(f"reference_points must be [N, Lq, L, 2] (x, y) or [N, Lq, L, 4] (cx, cy, w, h), "
                             f"got shape {ref_shape}")
        if ref_shape[:3] != (n, lq, n_levels):
            raise ValueError(f"reference_points must be [N={n}, Lq={lq}, L={n_levels}, 2 or 4], got shape {ref_shape}")
        sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
        starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
        if level_start_index.shape != starts.shape or not torch.equal(level_start_index.to(starts), starts):
            raise ValueError(f"level_start_index must be {starts.tolist()} for spatial_shapes "
                             f"{spatial_shapes.tolist()}, got {level_start_index.tolist()}")
        mask = input_padding_mask
        if mask is not None and (mask.dtype != torch.bool or mask.shape != input_flatten.shape[:2]):
            raise ValueError(f"input_padding_mask must be a BoolTensor {tuple(input_flatten.shape[:2])}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
