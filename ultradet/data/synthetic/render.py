"""Rendering a planned video (:mod:`.scene`) into 8-bit B-mode frames and the structures visible
in each: tissue layers, speckle, attenuation and time-gain compensation, log compression (the
model of :mod:`ultradet.data.synthetic`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from ultradet.data.synthetic.scene import TISSUE_MU, Ligament, Mass, MimicRates, VideoPlan, outer_radius, plan_video

# Fixed imaging constants (see the package docstring). Lengths scale with the frame size ``s``.
_DYNAMIC_RANGE_DB = 40.0  # log compression: [ref - 40 dB, ref] -> [0, 255]
_REF_AMPLITUDE = 3.75  # amplitude shown as white; reflectivity 1 then averages ~175 grey
_NOISE_AMPLITUDE = 0.012  # electronic noise floor (before TGC, so deep regions are noisier)


def _interfaces(video: VideoPlan, x: np.ndarray, y: float) -> np.ndarray:
    """(3, S) depth of the skin/fat, fat/gland and gland/muscle interfaces under each column."""
    w = video.interfaces
    phase = w[:, :, 1, None] * x[None, None, :] + w[:, :, 2, None] * y + w[:, :, 3, None]
    return (w[:, :, 0, None] * np.sin(phase)).sum(1)


def _texture(video: VideoPlan, y: float) -> np.ndarray:
    """(S, S) smooth zero-mean unit-ish texture of the plane at elevation y."""
    f = y / video.texture_dy
    i = int(f)
    w = np.float32(f - i)
    coarse = (1 - w) * video.texture[i] + w * video.texture[i + 1]
    return cv2.resize(coarse, (video.size, video.size), interpolation=cv2.INTER_CUBIC)


# Per tissue code (2 * layer + stripe; layers gel, fat, gland, muscle; stripe = fat septum or
# muscle stria): mean reflectivity, texture strength (log-normal) and relative attenuation.
_LAYER_REFL = np.array([0.001, 0.001, 0.09, 0.5, 0.9, 0.9, 0.12, 0.7], np.float32)
_LAYER_TEXTURE = np.array([0.0, 0.0, 0.3, 0.3, 0.45, 0.45, 0.1, 0.1], np.float32)
_LAYER_MU = np.array([0.0, 0.0, 0.8, 0.8, 1.0, 1.0, 1.2, 1.2], np.float32)


def _tissue(video: VideoPlan, y: float, x: np.ndarray, z: np.ndarray, tex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background reflectivity and attenuation (nepers/pixel) maps, each (S, S) float32.

    ``x``: (S,) phantom lateral coordinate of each column; ``z``: (S, S) depth of each pixel."""
    s = video.size
    skin, fat, muscle = _interfaces(video, x, y).astype(np.float32)
    layer = (z >= skin).view(np.int8) + (z >= fat).view(np.int8) + (z >= muscle).view(np.int8)
    septa = np.sin(z * np.float32(9.0 * np.pi / s) + 3.0 * tex) > 0.85  # between fat lobules
    striae = np.cos((z - muscle) * np.float32(2 * np.pi / (0.03 * s)) + 0.5 * tex) > 0.7
    stripe = np.where(layer == 3, striae, septa & (layer == 1))
    code = 2 * layer + stripe.view(np.int8)
    refl = _LAYER_REFL[code] * np.exp(_LAYER_TEXTURE[code] * tex)
    refl[np.abs(z - skin) < max(1.0, 0.012 * s)] = 2.0  # the skin line
    mu = _LAYER_MU[code] * np.float32(TISSUE_MU / s)
    return refl, mu


def _mass_window(mass: Mass, x0: float, s: int, lateral: int) -> tuple[slice, slice]:
    """Rows/columns of the frame that can hold the mass, its soft edge or its rim."""
    reach = outer_radius(mass) * max(mass.ax, mass.az) + 6 * mass.edge_px + 2
    cx = x0 - lateral
    rows = slice(int(np.clip(mass.z0 - reach, 0, s)), int(np.clip(mass.z0 + reach + 1, 0, s)))
    cols = slice(int(np.clip(cx - reach, 0, s)), int(np.clip(cx + reach + 1, 0, s)))
    return rows, cols


def _elevation_offset(mass: Mass, y: float) -> float | None:
    """The plane's normalised elevation offset from the structure's widest section: 0 at full
    size, 1 where it vanishes; None outside ``y_range``. A lesion's is ``(y - y0) / ay``; a
    mimic's is 0 except within ``taper`` of its ends (constant size, then gone)."""
    lo, hi = mass.y_range
    if not lo <= y <= hi:
        return None
    if np.isfinite(mass.ay):
        return (y - mass.y0) / mass.ay
    if mass.taper <= 0:
        return 0.0
    return max(0.0, 1.0 - min(y - lo, hi - y) / mass.taper)


def _mass_field(mass: Mass, y: float, s: int, lateral: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Signed depth (pixels, > 0 inside) of the mass' cross-section at elevation y over the frame
    window that can hold it: ``((rows, cols), field)``; None when the plane misses the mass.

    ``lateral`` is the probe's drift: frame column c images phantom x = c + lateral."""
    yn = _elevation_offset(mass, y)
    if yn is None or abs(yn) >= outer_radius(mass):
        return None
    x0 = mass.x0 + mass.slope * (y - mass.y0)
    rows, cols = _mass_window(mass, x0, s, lateral)
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return None
    dz = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] - np.float32(mass.z0)
    dx = np.arange(cols.start, cols.stop, dtype=np.float32)[None, :] + np.float32(lateral - x0)
    c, sn = np.float32(np.cos(mass.tilt)), np.float32(np.sin(mass.tilt))
    u, v = (c * dx + sn * dz) / np.float32(mass.ax), (c * dz - sn * dx) / np.float32(mass.az)
    theta = np.arctan2(v, u)
    r = np.ones_like(theta)
    for k, amp, phase, twist in mass.harmonics:
        r += np.float32(amp) * np.cos(np.float32(k) * theta + np.float32(phase + twist * yn))
    count, amp, phase = mass.spikes
    if amp:
        r += np.float32(amp) * np.maximum(np.cos(np.float32(count) * theta + np.float32(phase)), 0.0) ** 8
    r2 = r * r - np.float32(yn * yn)
    if r2.max() <= 0:
        return None
    field = (np.sqrt(np.maximum(r2, 0.0)) - np.hypot(u, v)) * np.float32(min(mass.ax, mass.az))
    return (rows, cols), field


def _ligament_field(lig: Ligament, y: float, x: np.ndarray, z: np.ndarray) -> np.ndarray | None:
    """Soft (S, S) occupancy in [0, 1] of the ligament in the plane at elevation y, or None."""
    if abs(y - lig.y0) > lig.half_y:
        return None
    ex, ez = lig.xb - lig.xa, lig.zb - lig.za
    along = np.clip(((x - lig.xa) * ex + (z - lig.za) * ez) / (ex * ex + ez * ez), 0.0, 1.0)
    dist = np.hypot(x - lig.xa - along * ex, z - lig.za - along * ez)
    return np.clip(1.0 - dist / lig.thickness, 0.0, 1.0).astype(np.float32)


def _box(inside: np.ndarray, min_area: float) -> list[float] | None:
    """COCO xywh of a boolean mask's bounding box (pixel edges), or None when too small to see."""
    if inside.sum() < min_area:
        return None
    rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]


@dataclass(frozen=True)
class SimulatedObject:
    """A structure visible in a simulated frame.

    Attributes:
        instance: its number within the video (1-based; a lesion's annotation ``instance_id`` is
            ``100 * video id + instance``).
        kind: ``"lesion"`` (annotated), ``"duct"`` or ``"shadow"`` (mimics, never annotated).
        box: COCO ``[x, y, w, h]`` of its cross-section, absolute pixels.
        area: pixels inside the cross-section.
        mean_grey: mean 8-bit intensity of the frame inside the cross-section.
    """

    instance: int
    kind: str
    box: list[float]
    area: int
    mean_grey: float


def _measure(image: np.ndarray, instance: int, kind: str, window: tuple[slice, slice], mask: np.ndarray) -> SimulatedObject:
    x, y, w, h = _box(mask, 0.0)
    return SimulatedObject(
        instance=instance, kind=kind, box=[x + window[1].start, y + window[0].start, w, h],
        area=int(mask.sum()), mean_grey=float(image[window][mask].mean()),
    )


class Renderer:
    """Renders frames of one video; holds its scatterer volume and per-size constants."""

    def __init__(self, video: VideoPlan, rng: np.random.Generator):
        s = video.size
        self.video = video
        self.rng = rng
        self.margin = int(np.abs(video.lateral).max())
        self.dy = 3.0 * s / 256  # elevation spacing of independent scatterer planes
        planes = int(video.elevation.max() / self.dy) + 2
        self.scatter = rng.standard_normal((planes, s, s + 2 * self.margin, 2), dtype=np.float32)
        self.sigma = (max(0.7, 1.8 * s / 256), max(0.5, 0.8 * s / 256))  # lateral, axial PSF
        self.ksize = tuple(2 * int(np.ceil(3 * sg)) + 1 for sg in self.sigma)
        kx = cv2.getGaussianKernel(self.ksize[0], self.sigma[0])
        kz = cv2.getGaussianKernel(self.ksize[1], self.sigma[1])
        # Blurring unit-variance scatterers keeps sum(k^2) of their variance: undo that so that
        # reflectivity R gives mean intensity R.
        self.psf_gain = np.float32(1.0 / np.sqrt(2.0 * (kx**2).sum() * (kz**2).sum()))
        self.x = np.arange(s, dtype=np.float32)
        self.z = np.arange(s, dtype=np.float32)[:, None]
        self.depth = np.broadcast_to(self.z, (s, s))
        # grey = 255 / DR * (dB(power * tgc^2 / ref^2) + DR); tgc = exp(2 tgc_mu z), ref from the gain.
        tgc_db = 20.0 * np.log10(np.e) * 2.0 * video.tgc_mu * self.depth
        ref_db = 20.0 * np.log10(_REF_AMPLITUDE) + video.gain_db
        self.grey_offset = ((tgc_db - ref_db + _DYNAMIC_RANGE_DB) * (255.0 / _DYNAMIC_RANGE_DB)).astype(np.float32)
        self.min_area = max(6.0, 0.003 * s * s)  # smaller cross-sections are not discernible
        # Details thinner than the lateral resolution cell (spicule tips) do not show in the image,
        # so the visible outline -- what an annotator boxes -- is the cross-section opened by it.
        cell = 2 * int(round(self.sigma[0])) + 1
        self.resolution_cell = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cell, cell))

    def _scatterers(self, y: float, shift: int) -> np.ndarray:
        f = y / self.dy
        i = int(f)
        a, b = np.float32(np.cos(np.pi / 2 * (f - i))), np.float32(np.sin(np.pi / 2 * (f - i)))
        lo = self.margin + shift
        cols = slice(lo, lo + self.video.size)
        return a * self.scatter[i][:, cols] + b * self.scatter[i + 1][:, cols]

    def frame(self, t: int) -> tuple[np.ndarray, list[SimulatedObject]]:
        """uint8 (S, S) image of frame t and every discernible structure in it (lesions and mimics)."""
        video, s = self.video, self.video.size
        y = float(video.elevation[t])
        x = self.x + np.float32(video.lateral[t])  # phantom coordinates of the frame's columns
        xx = np.broadcast_to(x, (s, s))
        tex = _texture(video, y)
        refl, mu = _tissue(video, y, x, self.depth, tex)
        drawn = []
        for instance, mass in enumerate(video.masses, start=1):
            found = _mass_field(mass, y, s, int(video.lateral[t]))
            if found is None:
                continue
            window, inside = found
            soft = np.clip(0.5 + inside / np.float32(mass.edge_px), 0.0, 1.0)
            rim = np.float32(4 * mass.rim) * soft * (1 - soft)  # peaks on the boundary
            lesion_refl = np.float32(mass.reflectivity) * np.exp(np.float32(0.3) * tex[window])
            refl[window] = refl[window] * (1 - soft) + lesion_refl * soft + rim
            mu[window] = mu[window] * (1 - soft) + np.float32(mass.mu) * soft
            visible = cv2.morphologyEx((inside > 0).view(np.uint8), cv2.MORPH_OPEN, self.resolution_cell).view(bool)
            if _box(visible, self.min_area) is not None:
                drawn.append((instance, mass.kind, window, visible))
        for lig in video.ligaments:
            occ = _ligament_field(lig, y, xx, self.depth)
            if occ is not None:
                refl = refl + 1.5 * occ
                mu = mu + lig.mu * occ
        image = self._image(refl, mu, t)
        return image, [_measure(image, instance, kind, window, mask) for instance, kind, window, mask in drawn]

    def _image(self, refl: np.ndarray, mu: np.ndarray, t: int) -> np.ndarray:
        # Round-trip attenuation above each pixel; slight lateral blur because the beam has width.
        atten = np.exp(np.float32(-2.0) * (np.cumsum(mu, axis=0) - mu * np.float32(0.5)))
        atten = cv2.GaussianBlur(atten, (0, 0), self.sigma[0])[..., None]
        echo = self._scatterers(float(self.video.elevation[t]), int(self.video.lateral[t]))
        echo *= (np.sqrt(refl) * self.psf_gain)[..., None]
        echo = cv2.GaussianBlur(echo, self.ksize, sigmaX=self.sigma[0], sigmaY=self.sigma[1])
        echo *= atten
        echo += self.rng.standard_normal(echo.shape, dtype=np.float32) * np.float32(_NOISE_AMPLITUDE)
        power = echo[..., 0] ** 2 + echo[..., 1] ** 2
        # TGC and the display reference are a fixed per-pixel offset in dB.
        grey = np.log10(power + np.float32(1e-12)) * np.float32(10 * 255 / _DYNAMIC_RANGE_DB) + self.grey_offset
        return np.clip(grey, 0, 255).astype(np.uint8)


def simulate_video(
    seed: int, *, size: int = 256, num_frames: int = 64, label: str = "benign", mimics: MimicRates = MimicRates()
) -> Iterator[tuple[np.ndarray, list[SimulatedObject]]]:
    """Simulate one sweep without writing anything: yields, per frame, the ``uint8[size, size]``
    image and its :class:`SimulatedObject` s (lesions and mimics). Same arguments, same frames.

    Raises:
        ValueError: ``label`` is not ``"benign"`` or ``"malignant"``.
    """
    if label not in ("benign", "malignant"):
        raise ValueError(f"label must be 'benign' or 'malignant', got {label!r}")
    rng = np.random.default_rng(seed)
    renderer = Renderer(plan_video(rng, size, num_frames, label, mimics), rng)
    for t in range(num_frames):
        yield renderer.frame(t)

