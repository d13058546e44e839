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

A caller that pairs one frame with several others (NTCA's frames and keyframes) prepares each
image once (``prepare(images) -> list``, one entry per image: what the estimator reads of it)
and asks for the flows of pairs of prepared images (``pairs(current, context, image_size,
grid_size)``); ``estimator(current, context, grid_size)`` is ``pairs`` of freshly prepared images.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ultradet.config import ExperimentConfig
from ultradet.modeling.registry import FLOW_ESTIMATORS
from ultradet.modeling.weights_file import read_state_dict

logger = logging.getLogger(__name__)

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
        return self.pairs(self.prepare(current), self.prepare(context), tuple(current.shape[-2:]), grid_size)

    @torch.no_grad()
    def pairs(
        self,
        current: list[tuple[np.ndarray, torch.device]],
        context: list[tuple[np.ndarray, torch.device]],
        image_size: tuple[int, int],
        grid_size: tuple[int, int],
    ) -> tuple[torch.Tensor, None]:
        """The flow of each pair ``(current[i], context[i])`` of :meth:`prepare`'d images of
        ``image_size`` (module docstring)."""
        fields = [self.estimate(a, b) for (a, _), (b, _) in zip(current, context)]
        reduced = torch.from_numpy(np.stack(fields)).permute(0, 3, 1, 2).to(current[0][1])
        return self._to_res4(reduced, image_size, grid_size), None

    @torch.no_grad()
    def prepare(self, images: torch.Tensor) -> list[tuple[np.ndarray, torch.device]]:
        """Per image of ``FloatTensor[N, 3, H, W]`` (normalised): the reduced grey uint8 image
        the estimator reads, and the device the flow goes back to."""
        return [(gray, images.device) for gray in self._gray(images)]

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


# (name, in multiple of width, out multiple of width, kernel, stride) of the FlowNetS encoder
# (Dosovitskiy et al., ICCV 2015, fig. 2); every conv is followed by LeakyReLU(0.1).
_ENCODER = (
    ("conv1", None, 1, 7, 2),
    ("conv2", 1, 2, 5, 2),
    ("conv3", 2, 4, 5, 2),
    ("conv3_1", 4, 4, 3, 1),
    ("conv4", 4, 8, 3, 2),
    ("conv4_1", 8, 8, 3, 1),
    ("conv5", 8, 8, 3, 2),
    ("conv5_1", 8, 8, 3, 1),
    ("conv6", 8, 16, 3, 2),
    ("conv6_1", 16, 16, 3, 1),
)
# The original's checkpoint wraps each conv / deconv with its LeakyReLU in a Sequential.
_CHECKPOINT_KEY = re.compile(r"^(conv\d(?:_1)?|deconv\d)\.0\.(weight|bias)$")
# DFF's flow multiplier (spec 3.7: flow = 2.5 * Conv(concat2)).
_FLOW_MULTIPLIER = 2.5
_LEAK = 0.1


def flownet_checkpoint_to_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a FlowNetS checkpoint in the original's layout to :class:`FlowNetS` keys.

    The original (``pretrained_models/flownet.ckpt``, ``MODEL.FLOWNET_WEIGHTS``) is a torch
    checkpoint whose state dict (top level, or under ``"state_dict"`` / ``"model"``, keys
    optionally prefixed ``module.`` or ``flownet.``) uses the FlowNetS names of flownet2-pytorch:

    * ``conv1.0.weight``, ``conv1.0.bias`` ... ``conv6_1.0.*`` (conv + LeakyReLU Sequentials:
      ``conv1, conv2, conv3, conv3_1, conv4, conv4_1, conv5, conv5_1, conv6, conv6_1``)
      -> ``conv1.weight`` ...;
    * ``deconv5.0.*`` ... ``deconv2.0.*`` (transposed conv + LeakyReLU) -> ``deconv5.*`` ...;
    * ``predict_flow6.*`` ... ``predict_flow2.*`` and ``upsampled_flow6_to_5.weight`` ...
      ``upsampled_flow3_to_2.weight``: unchanged.

    Other keys are returned unchanged (and then reported as unexpected by the loader).
    """
    out = {}
    for key, value in state.items():
        for prefix in ("module.", "flownet."):
            key = key[len(prefix) :] if key.startswith(prefix) else key
        out[_CHECKPOINT_KEY.sub(r"\1.\2", key)] = value
    return out


@FLOW_ESTIMATORS.register("flownets")
class FlowNetS(nn.Module):
    """FlowNetS (Dosovitskiy et al., ICCV 2015) in the Deep Feature Flow variant (Zhu et al.,
    CVPR 2017) that UltraDet uses (spec 3.7), with the original's layer names so that its
    ``flownet.ckpt`` loads by key mapping (:func:`flownet_checkpoint_to_state_dict`).

    ``concat(current, context)`` (6 ch) -> avg-pool x4 -> encoder ``conv1`` (7x7/2, ``width``)
    ... ``conv6_1`` (16 ``width``, stride 64 of the pooled input) -> refinement decoder:
    ``predict_flow6..3`` (3x3 -> 2), ``upsampled_flow6_to_5..3_to_2`` (4x4/2 transposed, no bias),
    ``deconv5..2`` (4x4/2 transposed + LeakyReLU), concatenated with the encoder's skip maps ->
    ``concat2`` (``3 width + 2`` channels, 194) -> avg-pool x4 -> flow = 2.5 *
    ``predict_flow2`` (3x3 -> 2) and DFF scale = 1 + ``scale`` (1x1 -> feature_channels, no
    bias). Both are resized to the res4 grid (bilinear, ``align_corners=True``). Decoder maps are
    cropped to their skip map where an odd size made them one larger. The flow is in res4 cells.

    Initialisation: MSRA for every conv, ``predict_flow2`` and ``scale`` zero, so that without
    weights the flow is 0 and the scale 1 (identity warp). With ``weights``, the checkpoint's
    tensors replace the initial ones (``scale``, new in DFF, usually stays zero). Either way the
    network **trains end to end** with the detector (main lr and weight decay): what the original
    in effect did, its freezing being a no-op (``p.requires_grad_ = False``; spec 3.7 "Bug").

    Args:
        feature_channels: channels of the warped map (res4: 256), size of the scale map.
        width: channels of ``conv1`` (64 in FlowNetS; the original's checkpoint needs 64).
        weights: optional path of a FlowNetS checkpoint in the original's layout (or of this
            module's own state dict).

    Raises:
        FileNotFoundError: ``weights`` is given and is not a file.
        ValueError: the checkpoint has tensors of another shape (another width), or none of
            this module's keys; ``CheckpointError`` (a ``ValueError``) when it does not load
            or holds no state dict (:func:`~ultradet.modeling.weights_file.read_state_dict`).
    """

    def __init__(self, *, feature_channels: int = _RES4_CHANNELS, width: int = 64, weights: str | None = None):
        super().__init__()
        for name, cin, cout, kernel, stride in _ENCODER:
            in_ch = 6 if cin is None else cin * width
            self.add_module(name, nn.Conv2d(in_ch, cout * width, kernel, stride=stride, padding=kernel // 2))
        # Decoder level k: input channels of deconv / predict_flow at level k, deconv output channels.
        concat = {6: 16 * width, 5: 16 * width + 2, 4: 12 * width + 2, 3: 6 * width + 2, 2: 3 * width + 2}
        deconv_out = {5: 8 * width, 4: 4 * width, 3: 2 * width, 2: width}
        for level in (6, 5, 4, 3, 2):
            self.add_module(f"predict_flow{level}", nn.Conv2d(concat[level], 2, 3, padding=1))
        for level in (5, 4, 3, 2):
            self.add_module(f"deconv{level}", nn.ConvTranspose2d(concat[level + 1], deconv_out[level], 4, 2, 1))
            self.add_module(
                f"upsampled_flow{level + 1}_to_{level}", nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=False)
            )
        self.scale = nn.Conv2d(concat[2], feature_channels, 1, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, a=_LEAK)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for tensor in (self.predict_flow2.weight, self.predict_flow2.bias, self.scale.weight):
            nn.init.zeros_(tensor)
        if weights is not None:
            self.load_checkpoint(Path(weights))

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "FlowNetS":
        return cls(weights=cfg.model.flow.weights)

    def load_checkpoint(self, path: Path) -> None:
        """Load a FlowNetS checkpoint (see :func:`flownet_checkpoint_to_state_dict`) and log the
        missing and unexpected keys. Raises as the class docstring says."""
        state = flownet_checkpoint_to_state_dict(read_state_dict(path, key="model.flow.weights"))
        own = self.state_dict()
        wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
                 if k in own and v.shape != own[k].shape]
        if wrong or not own.keys() & state.keys():
            raise ValueError(f"{path} is not a FlowNetS checkpoint of this width:\n  " + "\n  ".join(wrong or sorted(state)))
        result = self.load_state_dict(state, strict=False)
        logger.log(
            logging.WARNING if set(result.missing_keys) - {"scale.weight"} or result.unexpected_keys else logging.INFO,
            f"FlowNetS weights {path}: {len(own) - len(result.missing_keys)} tensors loaded; "
            f"missing (kept at init): {result.missing_keys}; unexpected: {result.unexpected_keys}",
        )

    def prepare(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Per image of ``FloatTensor[N, 3, H, W]``: itself (``[1, 3, H, W]``, gradients kept);
        the network reads a pair at once."""
        return list(images.split(1))

    def pairs(
        self, current: list[torch.Tensor], context: list[torch.Tensor], image_size: tuple[int, int], grid_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` of the pairs ``(current[i], context[i])`` of :meth:`prepare`'d images."""
        return self(torch.cat(current), torch.cat(context), grid_size)

    def forward(
        self, current: torch.Tensor, context: torch.Tensor, grid_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See the module docstring. Returns ``(flow [N, 2, h, w], scale [N, feature_channels, h, w])``."""
        x = F.avg_pool2d(torch.cat([current, context], dim=1), 4, ceil_mode=True)
        skips = {}
        for name, *_ in _ENCODER:
            x = F.leaky_relu(getattr(self, name)(x), _LEAK)
            skips[name] = x
        for level, skip in ((5, "conv5_1"), (4, "conv4_1"), (3, "conv3_1"), (2, "conv2")):
            size = skips[skip].shape[-2:]
            flow = getattr(self, f"upsampled_flow{level + 1}_to_{level}")(getattr(self, f"predict_flow{level + 1}")(x))
            up = F.leaky_relu(getattr(self, f"deconv{level}")(x), _LEAK)
            x = torch.cat([skips[skip], up[..., : size[0], : size[1]], flow[..., : size[0], : size[1]]], dim=1)
        x = F.avg_pool2d(x, 4, ceil_mode=True)
        flow = _FLOW_MULTIPLIER * self.predict_flow2(x)
        flow = F.interpolate(flow, size=grid_size, mode="bilinear", align_corners=True)
        scale = 1.0 + F.interpolate(self.scale(x), size=grid_size, mode="bilinear", align_corners=True)
        return flow, scale


def build_flow(cfg: ExperimentConfig) -> nn.Module:
    """The estimator of ``cfg.model.flow`` (``name``, ``auto`` resolved by ``weights``)."""
    return FLOW_ESTIMATORS.get(cfg.model.flow.estimator).from_config(cfg)
