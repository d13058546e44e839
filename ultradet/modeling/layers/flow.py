"""Inverse optical flow estimators for NTCA (spec section 3.7).

Every estimator is called as ``estimator(current, context, grid_size) -> (flow, scale)``:

* ``current``, ``context``: normalised images ``FloatTensor[N, 3, H, W]`` (pairs row by row);
* ``grid_size``: ``(h, w)`` of the res4 map;
* ``flow``: ``FloatTensor[N, 2, h, w]``, (dx, dy) **in res4 cells** at every res4 cell of the
  current frame, such that ``current(p) ~ context(p + flow(p))``; :func:`warp` with it aligns the
  context map to the current frame;
* ``scale``: the DFF scale map ``FloatTensor[N, C4, h, w]`` (FlowNetS) or None (classical).

Res4 cell ``j`` is taken to be centred on image coordinate ``stride * (j + 0.5)`` (continuous
coordinates, pixel ``i`` spans ``[i, i + 1)``), the convention of RoIAlign with ``aligned=True``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ultradet.config import ExperimentConfig
from ultradet.modeling.registry import FLOW_ESTIMATORS

_RES4_CHANNELS = 256
_RES4_STRIDE = 16


class ClassicalFlow(nn.Module):
    """Base of the OpenCV estimators: no parameters, no gradient, deterministic.

    The images are de-normalised (``x * pixel_std + pixel_mean``, RGB 0..255), converted to
    grayscale uint8, shrunk by ``downscale`` (area interpolation: fast, and the res4 grid is
    coarse anyway), the dense flow is estimated there, sampled at the res4 cell centres and
    converted from reduced-image pixels to res4 cells.

    Args:
        pixel_mean, pixel_std: the model's RGB normalisation.
        stride: res4 stride in input pixels (16).
        downscale: input-image pixels per flow pixel (4, as FlowNetS' input pooling).
    """

    def __init__(
        self,
        *,
        pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53),
        pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375),
        stride: int = _RES4_STRIDE,
        downscale: int = 4,
    ):
        super().__init__()
        self.pixel_mean = tuple(pixel_mean)
        self.pixel_std = tuple(pixel_std)
        self.stride = stride
        self.downscale = downscale

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "ClassicalFlow":
        return cls(pixel_mean=cfg.model.pixel_mean, pixel_std=cfg.model.pixel_std)

    def estimate(self, current: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Dense flow ``float32[h', w', 2]`` (reduced-image pixels) with
        ``current[y, x] ~ context[y + f[y, x, 1], x + f[y, x, 0]]``; both inputs ``uint8[h', w']``."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(
        self, current: torch.Tensor, context: torch.Tensor, grid_size: tuple[int, int]
    ) -> tuple[torch.Tensor, None]:
        """See the module docstring. Returns ``(flow FloatTensor[N, 2, h, w], None)`` on the
        images' device."""
        fields = [self.estimate(a, b) for a, b in zip(self._gray(current), self._gray(context))]
        reduced = torch.from_numpy(np.stack(fields)).permute(0, 3, 1, 2).to(current.device)
        return self._to_res4(reduced, tuple(current.shape[-2:]), grid_size), None

    def _gray(self, images: torch.Tensor) -> list[np.ndarray]:
        mean = torch.tensor(self.pixel_mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.pixel_std, device=images.device).view(1, 3, 1, 1)
        rgb = (images.float() * std + mean).clamp(0, 255).round().to(torch.uint8)
        height, width = images.shape[-2:]
        size = (max(1, round(width / self.downscale)), max(1, round(height / self.downscale)))
        return [
            cv2.resize(cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)
            for img in rgb.permute(0, 2, 3, 1).cpu().numpy()
        ]

    def _to_res4(self, reduced: torch.Tensor, image_size: tuple[int, int], grid_size: tuple[int, int]) -> torch.Tensor:
        (height, width), (h, w) = image_size, grid_size
        # Cell centres stride * (j + 0.5) as fractions of the image extent, which the reduced
        # image shares, so align_corners=False sampling needs no reduced-size bookkeeping.
        gx = 2.0 * self.stride * (torch.arange(w, device=reduced.device) + 0.5) / width - 1.0
        gy = 2.0 * self.stride * (torch.arange(h, device=reduced.device) + 0.5) / height - 1.0
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1).expand(len(reduced), h, w, 2)
        flow = F.grid_sample(reduced, grid, mode="bilinear", padding_mode="border", align_corners=False)
        pixels_per_cell = torch.tensor(
            [width / reduced.shape[-1] / self.stride, height / reduced.shape[-2] / self.stride], device=flow.device
        )
        return flow * pixels_per_cell.view(1, 2, 1, 1)


@FLOW_ESTIMATORS.register("farneback")
class FarnebackFlow(ClassicalFlow):
    """Gunnar Farneback's polynomial-expansion flow (``cv2.calcOpticalFlowFarneback``; pyramid
    scale 0.5, 3 levels, 15-pixel window, 3 iterations, poly_n 5, sigma 1.2). The default."""

    def estimate(self, current: np.ndarray, context: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(current, context, None, 0.5, 3, 15, 3, 5, 1.2, 0)


@FLOW_ESTIMATORS.register("dis")
class DISFlow(ClassicalFlow):
    """Dense Inverse Search flow (Kroeger et al., ECCV 2016; ``cv2.DISOpticalFlow``, MEDIUM preset)."""

    def estimate(self, current: np.ndarray, context: np.ndarray) -> np.ndarray:
        # Created per call: the OpenCV object holds no state we need and cannot be deep-copied.
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(current, context, None)


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2), nn.LeakyReLU(0.1)
    )


@FLOW_ESTIMATORS.register("flownets")
class FlowNetS(nn.Module):
    """A small FlowNetS (Dosovitskiy et al., ICCV 2015) with the DFF scale map (Zhu et al., "Deep
    Feature Flow", CVPR 2017), as used by UltraDet (spec 3.7), narrowed for speed.

    ``concat(current, context)`` (6 ch) -> avg-pool x4 -> conv 7x7/2 -> conv 5x5/2 (stride 16:
    the res4 grid) -> conv 3x3/2 -> conv 3x3 -> bilinear up x2 + conv, concat with the stride-16
    features -> flow = Conv3x3(-> 2), scale = 1 + Conv1x1(-> feature_channels, no bias). Both
    prediction convs start at zero: at init the flow is 0 and the scale 1 (identity warp), and the
    losses train the flow through ``grid_sample``. Flow is predicted directly in res4 cells.
    Both maps are resized to the res4 grid (bilinear, ``align_corners=True``).

    Weights: ``weights=None`` trains the network end to end with the detector. With a local
    ``weights`` path the state dict is loaded and the network is **frozen** with
    ``requires_grad_(False)``: what the original intended; its ``p.requires_grad_ = False``
    (attribute assignment) left FlowNet training (spec 3.7 "Bug").

    Args:
        feature_channels: channels of the warped map (res4: 256), size of the scale map.
        width: channels of the first conv (32); later stages use 2x and 4x.
        weights: optional path of a state dict of this module.

    Raises:
        FileNotFoundError: ``weights`` is given and is not a file.
    """

    def __init__(self, *, feature_channels: int = _RES4_CHANNELS, width: int = 32, weights: str | None = None):
        super().__init__()
        self.encoder16 = nn.Sequential(_conv(6, width, 7, 2), _conv(width, 2 * width, 5, 2))
        self.encoder32 = nn.Sequential(_conv(2 * width, 4 * width, 3, 2), _conv(4 * width, 4 * width, 3))
        self.decoder = _conv(4 * width, 2 * width, 3)
        self.flow = nn.Conv2d(4 * width, 2, 3, padding=1)
        self.scale = nn.Conv2d(4 * width, feature_channels, 1, bias=False)
        for layer in (self.flow, self.scale):
            nn.init.zeros_(layer.weight)
        nn.init.zeros_(self.flow.bias)
        if weights is not None:
            self._load_frozen(Path(weights))

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "FlowNetS":
        return cls(weights=cfg.model.roi_heads.flow.weights)

    def _load_frozen(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"FlowNetS weights not found: {path} (model.roi_heads.flow.weights)")
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.requires_grad_(False)

    def forward(
        self, current: torch.Tensor, context: torch.Tensor, grid_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See the module docstring. Returns ``(flow [N, 2, h, w], scale [N, feature_channels, h, w])``."""
        x = F.avg_pool2d(torch.cat([current, context], dim=1), 4, ceil_mode=True)
        x16 = self.encoder16(x)
        x32 = self.encoder32(x16)
        up = F.interpolate(x32, size=x16.shape[-2:], mode="bilinear", align_corners=False)
        x = torch.cat([self.decoder(up), x16], dim=1)
        flow = F.interpolate(self.flow(x), size=grid_size, mode="bilinear", align_corners=True)
        scale = 1.0 + F.interpolate(self.scale(x), size=grid_size, mode="bilinear", align_corners=True)
        return flow, scale


def build_flow(cfg: ExperimentConfig) -> nn.Module:
    """The estimator of ``cfg.model.roi_heads.flow`` (``name``, ``auto`` resolved by ``weights``)."""
    return FLOW_ESTIMATORS.get(cfg.model.roi_heads.flow.estimator).from_config(cfg)
