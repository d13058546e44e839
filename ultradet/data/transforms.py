"""Clip-consistent geometric and photometric transforms (spec section 2, "Augmentations").

A :class:`ClipTransform` is drawn once per clip and applied identically to every frame and its
boxes, as the original draws one transform from a clip's first frame. Order: resize, colour
jitter, horizontal flip.

Resizes are PIL-style bilinear, antialiased when shrinking (:func:`resize_bilinear`), as the
original's PIL resize.

Deviation from the original, on purpose: the original jitters contrast, sharpness and colour
(saturation) with PIL ``ImageEnhance``. Ultrasound frames are grey, so saturation is a no-op, and
we jitter contrast and brightness instead (the probe's gain varies between operators);
sharpness is not jittered. Factors are ``1 + color_jitter * (2u - 1)``, as in the original.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ultradet.config import InputConfig

# A box narrower or lower than this after clipping to the frame is "empty" and dropped.
EMPTY_BOX_PX = 1e-3


@dataclass(frozen=True)
class ClipTransform:
    """One clip's transform.

    Attributes:
        out_height, out_width: size of every transformed frame, pixels.
        contrast: contrast factor (1 = unchanged); blends each frame with its mean grey, like PIL.
        brightness: brightness factor (1 = unchanged); multiplies the pixel values.
        flip: mirror horizontally.
    """

    out_height: int
    out_width: int
    contrast: float = 1.0
    brightness: float = 1.0
    flip: bool = False

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """uint8 ``(H, W, 3)`` RGB -> float32 ``(out_height, out_width, 3)``, values 0..255.

        Resize: :func:`resize_bilinear`; contrast then brightness, clipped to [0, 255] after each
        (as PIL)."""
        out = resize_bilinear(image, self.out_height, self.out_width).astype(np.float32)
        if self.contrast != 1.0:
            mean = np.float32(out.mean())
            out = np.clip(mean + np.float32(self.contrast) * (out - mean), 0.0, 255.0)
        if self.brightness != 1.0:
            out = np.clip(out * np.float32(self.brightness), 0.0, 255.0)
        if self.flip:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def apply_boxes(self, boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Map boxes of an ``height`` x ``width`` frame into the transformed frame.

        Args:
            boxes: float ``(K, 4)`` XYXY absolute pixels of the original frame.
        Returns:
            ``(boxes', keep)``: float32 ``(K', 4)`` XYXY pixels of the transformed frame, clipped
            to it, and the int64 ``(K',)`` indices of the kept input boxes. Boxes that are empty
            after clipping (side < ``EMPTY_BOX_PX``) are dropped, as the original filters empty
            instances; with in-frame input boxes this only happens to degenerate ones.
        """
        sx, sy = self.out_width / width, self.out_height / height
        out = np.asarray(boxes, np.float32).reshape(-1, 4) * np.float32([sx, sy, sx, sy])
        if self.flip:
            out = np.stack([self.out_width - out[:, 2], out[:, 1], self.out_width - out[:, 0], out[:, 3]], 1)
        out[:, 0::2] = np.clip(out[:, 0::2], 0, self.out_width)
        out[:, 1::2] = np.clip(out[:, 1::2], 0, self.out_height)
        keep = np.flatnonzero((out[:, 2] - out[:, 0] >= EMPTY_BOX_PX) & (out[:, 3] - out[:, 1] >= EMPTY_BOX_PX))
        return out[keep].astype(np.float32), keep.astype(np.int64)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """PIL-style bilinear resize of a uint8 ``(H, W, C)`` image to ``(height, width, C)`` uint8.

    Shrinking is antialiased: the triangle filter widens with the scale factor (torch's
    ``interpolate(..., antialias=True)``, which follows PIL's ``Image.resize(BILINEAR)``, the
    original's resize; spec section 2), so frame content finer than the output grid is averaged
    rather than aliased. Enlarging is plain bilinear (half-pixel centres). Values are rounded to
    uint8, as PIL does. Deterministic (CPU). The same size returns the image unchanged.
    """
    if image.shape[:2] == (height, width):
        return image
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    out = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _resized(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, int(height * scale)), max(1, int(width * scale))


def draw_train_transform(height: int, width: int, cfg: InputConfig, rng: np.random.Generator) -> ClipTransform:
    """Draw one clip's random transform for ``height`` x ``width`` frames.

    ``scale = U(scale_train) * sqrt(fixed_area_train / (H * W))``, new size ``(int(H * scale),
    int(W * scale))``; contrast and brightness factors ``1 + color_jitter * (2u - 1)``; flip with
    probability ``flip_prob``. The draws happen in this order, so a seed fixes all of them.
    """
    scale = rng.uniform(*cfg.scale_train) * math.sqrt(cfg.fixed_area_train / (height * width))
    contrast, brightness = 1.0 + cfg.color_jitter * (2 * rng.random(2) - 1)
    flip = bool(rng.random() < cfg.flip_prob)
    return ClipTransform(*_resized(height, width, scale), contrast=float(contrast),
                         brightness=float(brightness), flip=flip)


def build_test_transform(height: int, width: int, *, fixed_area_test: float, scale_test: float) -> ClipTransform:
    """The deterministic test-time resize: ``scale = scale_test * sqrt(fixed_area_test / (H * W))``,
    no colour change, no flip."""
    return ClipTransform(*_resized(height, width, scale_test * math.sqrt(fixed_area_test / (height * width))))
