"""The embedded dataset: simulated B-mode breast ultrasound sweeps in the CVA-BUS layout.

No real patient data ships with the project, so the pipeline runs end to end on videos simulated
from a small physical model. Each video is a linear-probe sweep through a 3D phantom:

* **Geometry.** Frame ``t`` is the plane at elevation ``y(t)`` (pixels; the frame's rows are depth
  ``z``, its columns lateral ``x``). ``y(t)`` is a smooth sweep with a slow wobble and a little
  jitter; the probe also drifts laterally by a few whole pixels. Structures are 3D, so
  consecutive frames are correlated and lesions appear, grow, shrink and disappear by themselves.
* **Speckle.** A complex Gaussian scatterer volume (independent planes every ``dy`` pixels of
  elevation, blended between neighbours with variance-preserving cos/sin weights) is weighted by
  the tissue's reflectivity and blurred with an anisotropic Gaussian point-spread function (fine
  axially, coarse laterally). The envelope is log-compressed to 8 bits over a fixed dynamic range.
* **Attenuation.** Amplitude decays as ``exp(-integral mu dz)`` (round trip), which time-gain
  compensation undoes only for the average tissue. A lesion or ligament whose ``mu`` differs from
  the tissue's therefore brightens (enhancement) or darkens (shadowing) everything below it.
* **Tissue.** Stand-off gel, a bright skin line, hypoechoic subcutaneous fat with lobular texture,
  heterogeneous hyperechoic fibroglandular tissue and striated pectoral muscle, separated by
  undulating interfaces.
* **Lesions** (the boxes). Benign: smooth oval, wider than tall, hypoechoic, low attenuation
  (posterior enhancement). Malignant: spiculated irregular outline, taller than wide, strongly
  attenuating (posterior shadowing). The box of a frame is the bounding box of the lesion's
  cross-section in that plane, when the cross-section is large enough to see.
* **Negative temporal contexts** (no boxes): mimics that one frame cannot tell from a lesion but
  time can, as in real breast ultrasound. Their cross-sections are drawn from the lesions'
  distributions (size, aspect ratio, outline irregularity, echogenicity, margin width, posterior
  enhancement or shadowing), so single-frame statistics overlap; their behaviour in time differs:

  - *Ducts and vessels* (``duct_rate`` per video): fluid-filled tubes running obliquely through the
    swept volume. While the probe sweeps along the tube, the plane cuts it at the same angle, so the
    cross-section keeps a **constant size** for many frames and **drifts sideways** at a steady
    speed (the tube's lateral slope), tapering only where the tube bends out of the swept range.
    A 3D mass instead appears, grows, shrinks and disappears.
  - *Shadow and refraction artefacts* (``shadow_rate`` per video): a Cooper's ligament or the edge
    of a fat lobule met near the critical angle refracts the beam away and leaves a hypoechoic,
    shadowing, mass-like region beneath it. It exists only while the probe holds that angle, so it
    **flickers**: full size for a few frames (``shadow_frames``), then gone.

  Thin Cooper's ligaments (a bright oblique line with a shadow band beneath, a few frames long)
  add realistic clutter.

Randomness: one master ``numpy`` generator (from ``seed``) draws the video ids and one child seed
per video, so a video's pixels depend only on ``(seed, split, index)``. PNGs are written with a
fixed compression level and JSONs with fixed formatting: the same arguments give byte-identical
files. Writing is atomic: everything goes to a temporary sibling folder that is renamed into place
only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

# Fixed imaging constants (see module docstring). Lengths scale with the frame size ``s``.
_DYNAMIC_RANGE_DB = 40.0  # log compression: [ref - 40 dB, ref] -> [0, 255]
_REF_AMPLITUDE = 3.75  # amplitude shown as white; reflectivity 1 then averages ~175 grey
_NOISE_AMPLITUDE = 0.012  # electronic noise floor (before TGC, so deep regions are noisier)
_TISSUE_MU = 1.45  # average round-trip-halved attenuation over the whole depth, nepers
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fixed: byte-identical output; fast
_LESION_REDRAWS = 50  # placements tried for a second lesion that must not meet the first
CATEGORIES = [{"id": 1, "name": "lesion"}]


# ----------------------------------------------------------------------------- phantom structures
@dataclass(frozen=True)
class _Mass:
    """A 3D structure cut by the scan plane: a lesion (``kind="lesion"``, an ellipsoid
    ``((x-x0)/ax)^2 + ((z-z0)/az)^2 + ((y-y0)/ay)^2 <= r(theta, y)^2``, rotated in-plane by
    ``tilt``) or a mimic (``kind`` ``"duct"`` or ``"shadow"``: ``ay`` infinite, i.e. a prism along
    the elevation axis that exists for ``y`` in ``y_range``, see the module docstring).

    ``harmonics`` rows are (order k, amplitude, phase, elevation twist) of the outline ``r``;
    ``spikes`` = (count, amplitude, phase) of spiculations. Lengths in pixels.
    """

    x0: float
    z0: float
    y0: float
    ax: float
    az: float
    ay: float
    tilt: float
    harmonics: np.ndarray
    spikes: tuple[float, float, float]
    reflectivity: float
    mu: float  # attenuation inside, nepers per pixel
    edge_px: float  # width of the soft boundary
    rim: float  # extra reflectivity on the boundary (echogenic halo / vessel wall)
    kind: str  # "lesion" (annotated), "duct" or "shadow" (mimics, never annotated)
    y_range: tuple[float, float] = (-np.inf, np.inf)  # mimics exist only between these
    slope: float = 0.0  # lateral shift per elevation pixel: a tube's sideways drift
    taper: float = 0.0  # elevation px over which a tube narrows to nothing at its ends; 0 = abrupt


@dataclass(frozen=True)
class _Ligament:
    """A Cooper's ligament: a thin oblique sheet from (xa, za) to (xb, zb), |y - y0| <= half_y."""

    xa: float
    za: float
    xb: float
    zb: float
    y0: float
    half_y: float
    thickness: float
    mu: float


@dataclass(frozen=True)
class _Video:
    """Everything needed to render one video's frames."""

    size: int
    label: str
    elevation: np.ndarray  # (T,) y(t), pixels
    lateral: np.ndarray  # (T,) integer probe drift, pixels
    interfaces: np.ndarray  # (3, 3, 4): per interface, 3 waves of (amp, fx, fy, phase) ; row 0 amp = base
    texture: np.ndarray  # (Gy, Gz, Gx) coarse 3D noise
    texture_dy: float
    masses: tuple[_Mass, ...]
    ligaments: tuple[_Ligament, ...]
    gain_db: float
    tgc_mu: float


@dataclass(frozen=True)
class MimicRates:
    """How often the lesion mimics occur (module docstring): Poisson means per video.

    The default duct rate is calibrated, not free: a duct stays in view for most of a sweep, so each
    one costs a single-frame detector dozens of confident false positives. At 0.3 per video the
    ducts drew 9-26 % of the pretrained FasterRCNN's detections scoring 0.5 or more on the default
    folds, and its precision at recall 0.8 was 0.45-0.80 (AP50 without those FPs: 0.78-0.88 instead
    of 0.71-0.80), far below single-frame detectors on real breast ultrasound (the paper's
    FasterRCNN: Pr80 91.3 on CVA-BUS). At 0.1 the default run's FasterRCNN has Pr80 92.5 (fold
    mean), the paper's regime, where the mimics left are what the temporal models must suppress.

    Attributes:
        duct_rate: lesion-like ducts/vessels per video.
        shadow_rate: flickering shadow/refraction artefacts per video.
        shadow_frames: (min, max) frames a shadow artefact lasts (inclusive).
    """

    duct_rate: float = 0.1
    shadow_rate: float = 1.0
    shadow_frames: tuple[int, int] = (2, 5)


def _cross_section(rng: np.random.Generator, s: int, style: str) -> dict:
    """Shape and echo parameters of a mass-like cross-section in the ``style`` of a benign lesion
    (smooth oval, wider than tall, low attenuation: posterior enhancement) or a malignant one
    (spiculated, taller than wide, strongly attenuating: posterior shadowing). Lesions and mimics
    draw from the same distributions, so a single frame does not tell them apart."""
    # Semi-axes as fractions of the frame (~4 cm field of view): lesions of ~0.6-1.7 cm.
    if style == "benign":
        ax = rng.uniform(0.11, 0.21) * s
        az = ax * rng.uniform(0.5, 0.8)  # wider than tall
        orders = np.array([2, 3])
        amps = rng.uniform(0.0, 0.04, 2)
        spikes = (0.0, 0.0, 0.0)
        refl, mu, edge, rim = rng.uniform(0.008, 0.02), 0.1, max(1.0, 0.012 * s), 0.0
    else:
        ax = rng.uniform(0.075, 0.14) * s
        az = ax * rng.uniform(1.05, 1.5)  # taller than wide
        orders = np.arange(2, 7)
        amps = rng.uniform(0.04, 0.1, orders.size)
        spikes = (float(rng.integers(7, 12)), rng.uniform(0.15, 0.3), rng.uniform(0, 2 * np.pi))
        refl, mu, edge, rim = rng.uniform(0.01, 0.03), rng.uniform(2.0, 3.5), max(0.6, 0.004 * s), 0.6
    harmonics = np.stack([orders, amps, rng.uniform(0, 2 * np.pi, orders.size), rng.normal(0, 1.0, orders.size)], 1)
    return dict(
        ax=ax, az=az, tilt=rng.normal(0, 0.15), harmonics=harmonics, spikes=spikes,
        reflectivity=refl, mu=mu * _TISSUE_MU / s, edge_px=edge, rim=rim,
    )


def _depth(rng: np.random.Generator, half_height: float, top: float, bottom: float) -> float:
    """A centre depth that keeps a structure of ``half_height`` inside the glandular layer."""
    return rng.uniform(top + 1.1 * half_height, max(top + 1.1 * half_height, bottom - 1.1 * half_height))


def _lesion(rng: np.random.Generator, s: int, label: str, y0: float, top: float, bottom: float) -> _Mass:
    shape = _cross_section(rng, s, label)
    return _Mass(
        x0=rng.uniform(0.25, 0.75) * s, z0=_depth(rng, shape["az"], top, bottom), y0=y0,
        ay=shape["ax"] * rng.uniform(1.2, 1.8), kind="lesion", **shape,
    )


def _lesions(
    rng: np.random.Generator, s: int, label: str, centres: np.ndarray, centre_range: tuple[float, float],
    top: float, bottom: float,
) -> list[_Mass]:
    """One lesion per elevation centre. Two masses cannot fill the same tissue, and where their
    cross-sections overlapped in a frame the boxes would nest, which no annotator draws: a lesion
    whose extent meets an earlier one's is redrawn (position along the sweep included), up to
    ``_LESION_REDRAWS`` times; a video with no room for the second lesion keeps one."""
    lesions: list[_Mass] = []
    for centre in centres:
        for _ in range(_LESION_REDRAWS):
            lesion = _lesion(rng, s, label, float(centre), top, bottom)
            if not any(_intersects(lesion, other) for other in lesions):
                lesions.append(lesion)
                break
            centre = rng.uniform(*centre_range)
    return lesions


def _intersects(a: _Mass, b: _Mass) -> bool:
    """Whether two lesions' bounding extents (outline harmonics and spicules included) overlap on
    all three axes: lateral x, depth z and elevation y."""
    ra, rb = _outer_radius(a), _outer_radius(b)
    in_plane = ra * max(a.ax, a.az) + rb * max(b.ax, b.az)  # any in-plane tilt
    return abs(a.x0 - b.x0) < in_plane and abs(a.z0 - b.z0) < in_plane and abs(a.y0 - b.y0) < ra * a.ay + rb * b.ay


def _outer_radius(mass: _Mass) -> float:
    """The largest normalised radius ``r(theta, y)`` of the outline (module docstring of _Mass)."""
    return 1.0 + float(np.abs(mass.harmonics[:, 1]).sum()) + mass.spikes[1]


def _duct(rng: np.random.Generator, s: int, y_lo: float, y_hi: float, top: float, bottom: float) -> _Mass:
    """A fluid-filled tube along the sweep: a benign-looking oval cross-section of constant size,
    fluid-dark inside with an echogenic wall, drifting sideways (slope) as the plane moves along it."""
    shape = _cross_section(rng, s, "benign")
    shape["harmonics"][:, 3] = 0.0  # a straight tube: the outline does not twist along it
    shape["reflectivity"] *= rng.uniform(0.5, 1.0)  # fluid: fewer internal echoes
    shape["rim"] = rng.uniform(0.2, 0.6)  # the duct/vessel wall
    span = (y_hi - y_lo) * rng.uniform(0.3, 0.7)
    start = rng.uniform(y_lo - 0.1 * span, y_hi - 0.9 * span)
    return _Mass(
        x0=rng.uniform(0.25, 0.75) * s, z0=_depth(rng, shape["az"], top, bottom), y0=start + span / 2,
        ay=np.inf, kind="duct", y_range=(start, start + span),
        slope=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.5)), taper=0.04 * s, **shape,
    )


def _shadow(
    rng: np.random.Generator, s: int, elevation: np.ndarray, frames: tuple[int, int], top: float, bottom: float
) -> _Mass:
    """A refraction / Cooper's-ligament shadow: a mass-like hypoechoic region (outline of either
    lesion style) with a blurred margin that shadows what lies beneath, and exists at full size
    for ``frames`` frames of the sweep, then vanishes."""
    shape = _cross_section(rng, s, str(rng.choice(["benign", "malignant"])))
    shape["edge_px"] *= rng.uniform(1.0, 3.0)  # ill-defined margin
    shape["rim"] = 0.0
    shape["reflectivity"] = rng.uniform(0.012, 0.035)  # tissue that receives less of the beam
    shape["mu"] = rng.uniform(2.0, 4.0) * _TISSUE_MU / s  # what lies beneath is shadowed too
    per_frame = float(np.abs(np.diff(elevation)).mean()) if len(elevation) > 1 else 1.0
    half = 0.5 * per_frame * rng.integers(frames[0], frames[1] + 1)
    y0 = rng.uniform(elevation.min(), elevation.max())
    return _Mass(
        x0=rng.uniform(0.2, 0.8) * s, z0=_depth(rng, shape["az"], top, bottom), y0=y0, ay=np.inf,
        kind="shadow", y_range=(y0 - half, y0 + half), **shape,
    )


def _ligament(rng: np.random.Generator, s: int, y_lo: float, y_hi: float, fat_bottom: float) -> _Ligament:
    xa = rng.uniform(0.1, 0.9) * s
    thickness = max(1.0, 0.012 * s)
    return _Ligament(
        xa=xa, za=0.05 * s, xb=xa + rng.uniform(-0.15, 0.15) * s, zb=fat_bottom + 0.02 * s,
        y0=rng.uniform(y_lo, y_hi), half_y=rng.uniform(0.012, 0.03) * s, thickness=thickness,
        mu=rng.uniform(0.25, 0.5) / thickness,
    )


def _sweep(rng: np.random.Generator, s: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Elevation y(t) (smooth sweep + wobble + jitter) and integer lateral drift, pixels."""
    t = np.arange(n, dtype=np.float64)
    travel = rng.uniform(0.45, 0.7) * s * rng.choice([-1.0, 1.0])
    wobble = rng.uniform(0.01, 0.04) * s * np.sin(2 * np.pi * t / rng.uniform(20, 60) + rng.uniform(0, 2 * np.pi))
    y = travel * t / max(n - 1, 1) + wobble + rng.normal(0, 0.002 * s, n)
    lateral = np.rint(rng.uniform(0, 0.02) * s * np.sin(2 * np.pi * t / rng.uniform(30, 90) + rng.uniform(0, 6.3)))
    return y - y.min(), lateral.astype(np.int64)


def _plan_video(rng: np.random.Generator, s: int, n: int, label: str, mimics: MimicRates) -> _Video:
    """Draw one video's phantom and probe motion."""
    elevation, lateral = _sweep(rng, s, n)
    y_lo, y_hi = float(elevation.min()), float(elevation.max())
    bases = np.array([0.04, rng.uniform(0.2, 0.3), rng.uniform(0.74, 0.86)]) * s  # skin, fat, muscle
    waves = np.zeros((3, 3, 4))
    waves[:, :, 0] = rng.uniform(0.0, 0.025, (3, 3)) * s
    waves[0, :, 0] *= 0.1  # the skin line is nearly flat
    waves[:, :, 1] = rng.uniform(0.5, 3.0, (3, 3)) * 2 * np.pi / s
    waves[:, :, 2] = rng.uniform(-1.5, 1.5, (3, 3)) * 2 * np.pi / s
    waves[:, :, 3] = rng.uniform(0, 2 * np.pi, (3, 3))
    waves[:, 0, 0] += bases  # wave 0 carries the interface's mean depth in its amplitude slot
    waves[:, 0, 1:3] = 0.0
    waves[:, 0, 3] = np.pi / 2  # sin(pi/2) = 1: the base depth
    texture_dy = 0.08 * s
    texture = rng.standard_normal((int((y_hi - y_lo) / texture_dy) + 3, 12, 12)).astype(np.float32)
    top, bottom = bases[1] + 0.04 * s, bases[2] - 0.04 * s
    centre_range = (y_lo + 0.15 * (y_hi - y_lo), y_hi - 0.15 * (y_hi - y_lo))
    centres = rng.uniform(*centre_range, 2 if rng.random() < 0.15 else 1)
    masses = _lesions(rng, s, label, centres, centre_range, top, bottom)
    masses += [_duct(rng, s, y_lo, y_hi, top, bottom) for _ in range(rng.poisson(mimics.duct_rate))]
    masses += [
        _shadow(rng, s, elevation, mimics.shadow_frames, top, bottom) for _ in range(rng.poisson(mimics.shadow_rate))
    ]
    ligaments = tuple(_ligament(rng, s, y_lo, y_hi, bases[1]) for _ in range(rng.integers(1, 4)))
    return _Video(
        size=s, label=label, elevation=elevation, lateral=lateral, interfaces=waves,
        texture=texture, texture_dy=texture_dy, masses=tuple(masses), ligaments=ligaments,
        gain_db=rng.uniform(-2.0, 2.0), tgc_mu=_TISSUE_MU / s * rng.uniform(0.85, 1.05),
    )


# ------------------------------------------------------------------------------------- rendering
def _interfaces(video: _Video, x: np.ndarray, y: float) -> np.ndarray:
    """(3, S) depth of the skin/fat, fat/gland and gland/muscle interfaces under each column."""
    w = video.interfaces
    phase = w[:, :, 1, None] * x[None, None, :] + w[:, :, 2, None] * y + w[:, :, 3, None]
    return (w[:, :, 0, None] * np.sin(phase)).sum(1)


def _texture(video: _Video, y: float) -> np.ndarray:
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


def _tissue(video: _Video, y: float, x: np.ndarray, z: np.ndarray, tex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    mu = _LAYER_MU[code] * np.float32(_TISSUE_MU / s)
    return refl, mu


def _mass_window(mass: _Mass, x0: float, s: int, lateral: int) -> tuple[slice, slice]:
    """Rows/columns of the frame that can hold the mass, its soft edge or its rim."""
    reach = _outer_radius(mass) * max(mass.ax, mass.az) + 6 * mass.edge_px + 2
    cx = x0 - lateral
    rows = slice(int(np.clip(mass.z0 - reach, 0, s)), int(np.clip(mass.z0 + reach + 1, 0, s)))
    cols = slice(int(np.clip(cx - reach, 0, s)), int(np.clip(cx + reach + 1, 0, s)))
    return rows, cols


def _elevation_offset(mass: _Mass, y: float) -> float | None:
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


def _mass_field(mass: _Mass, y: float, s: int, lateral: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Signed depth (pixels, > 0 inside) of the mass' cross-section at elevation y over the frame
    window that can hold it: ``((rows, cols), field)``; None when the plane misses the mass.

    ``lateral`` is the probe's drift: frame column c images phantom x = c + lateral."""
    yn = _elevation_offset(mass, y)
    if yn is None or abs(yn) >= _outer_radius(mass):
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


def _ligament_field(lig: _Ligament, y: float, x: np.ndarray, z: np.ndarray) -> np.ndarray | None:
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


class _Renderer:
    """Renders frames of one video; holds its scatterer volume and per-size constants."""

    def __init__(self, video: _Video, rng: np.random.Generator):
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


# ------------------------------------------------------------------------------------- dataset IO
def _video_ids(rng: np.random.Generator, count: int, taken: set[str], num_folds: int) -> list[str]:
    """``count`` fresh 16-hex ids; with ``num_folds`` > 0, ids are redrawn until their patient fold
    (sha256 rule, spec section 1) cycles 0, 1, ..., so every fold gets videos."""
    ids = []
    while len(ids) < count:
        key = rng.bytes(8).hex()
        fold_ok = num_folds <= 0 or int(hashlib.sha256(key.encode()).hexdigest(), 16) % num_folds == len(ids) % num_folds
        if key not in taken and fold_ok:
            taken.add(key)
            ids.append(key)
    return ids


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
    renderer = _Renderer(_plan_video(rng, size, num_frames, label, mimics), rng)
    for t in range(num_frames):
        yield renderer.frame(t)


def _write_split(
    root: Path, split_videos: list[tuple[str, str, int, int]], size: int, mimics: MimicRates, bar: tqdm
) -> dict:
    """Render and write one split; returns its COCO-VID dict (only lesions are annotated)."""
    coco = {"videos": [], "images": [], "annotations": [], "categories": CATEGORIES}
    for video_id, (key, label, num_frames, video_seed) in enumerate(split_videos, start=1):
        rng = np.random.default_rng(video_seed)
        renderer = _Renderer(_plan_video(rng, size, num_frames, label, mimics), rng)
        name = f"{label}/{key}"
        folder = root / "rawframes" / name
        folder.mkdir(parents=True)
        coco["videos"].append({"id": video_id, "name": name})
        for t in range(num_frames):
            image, objects = renderer.frame(t)
            file_name = f"{name}/{t:06d}.png"
            ok, png = cv2.imencode(".png", image, _PNG_PARAMS)
            if not ok:
                raise RuntimeError(f"PNG encoding failed for {file_name}")
            (root / "rawframes" / file_name).write_bytes(png.tobytes())
            image_id = len(coco["images"]) + 1
            coco["images"].append(
                {"id": image_id, "video_id": video_id, "frame_id": t, "file_name": file_name,
                 "height": size, "width": size}
            )
            for obj in objects:
                if obj.kind != "lesion":
                    continue
                coco["annotations"].append(
                    {"id": len(coco["annotations"]) + 1, "image_id": image_id, "video_id": video_id,
                     "category_id": 1, "instance_id": video_id * 100 + obj.instance, "bbox": obj.box,
                     "area": obj.box[2] * obj.box[3], "iscrowd": 0}
                )
            bar.update(1)
    return coco


def _plan_splits(
    rng: np.random.Generator, num_videos: int, test_videos: int, min_frames: int, max_frames: int, num_folds: int
) -> dict[str, list[tuple[str, str, int, int]]]:
    taken: set[str] = set()
    plan = {}
    for split, count, folds in (("trainval", num_videos, num_folds), ("test", test_videos, 0)):
        ids = _video_ids(rng, count, taken, folds)
        malignant = np.zeros(count, bool)
        malignant[: round(0.6 * count)] = True  # CVA-BUS is ~60 % malignant
        rng.shuffle(malignant)
        frames = rng.integers(min_frames, max_frames + 1, count)
        seeds = rng.integers(0, 2**63, count)
        plan[split] = [
            (key, "malignant" if m else "benign", int(n), int(sd))
            for key, m, n, sd in zip(ids, malignant, frames, seeds)
        ]
    return plan


def generate_dataset(
    out_dir: str | Path,
    *,
    num_videos: int = 32,
    test_videos: int = 8,
    min_frames: int = 48,
    max_frames: int = 96,
    size: int = 256,
    seed: int = 0,
    num_folds: int = 4,
    duct_rate: float = MimicRates.duct_rate,
    shadow_rate: float = MimicRates.shadow_rate,
    shadow_frames: tuple[int, int] = MimicRates.shadow_frames,
    progress: bool = True,
) -> Path:
    """Simulate a CVA-BUS-style dataset into ``out_dir`` (replacing it atomically).

    Layout: ``rawframes/{benign,malignant}/<16-hex id>/NNNNNN.png`` (8-bit grayscale, square
    ``size`` x ``size``) plus ``trainval.json`` and ``test.json`` in the COCO-VID schema of spec
    section 1 (bbox = xywh absolute pixels, category 1 "lesion", ``instance_id`` =
    ``100 * video id + lesion number``, unique within a split).

    Args:
        out_dir: destination folder; an existing one is replaced only once the new one is complete.
        num_videos: videos in ``trainval.json``; their ids are drawn so that the patient folds
            (``sha256(id) % num_folds``) take turns, i.e. every fold holds videos.
        test_videos: videos in ``test.json`` (ids never repeat a trainval id).
        min_frames, max_frames: inclusive range of frames per video.
        size: frame side, pixels.
        seed: master seed; same arguments give byte-identical files.
        num_folds: fold count used to balance trainval ids (0 disables balancing).
        duct_rate, shadow_rate, shadow_frames: how often lesion mimics occur (:class:`MimicRates`).
        progress: show a tqdm bar over frames.

    Returns:
        ``Path(out_dir)``.

    Raises:
        ValueError: on non-positive counts/sizes or ``min_frames > max_frames``.
    """
    if num_videos < 1 or test_videos < 0 or not 1 <= min_frames <= max_frames or size < 16:
        raise ValueError(
            f"invalid synthetic dataset parameters: num_videos={num_videos} (>=1), test_videos={test_videos} "
            f"(>=0), min_frames={min_frames} <= max_frames={max_frames} (>=1), size={size} (>=16)"
        )
    if duct_rate < 0 or shadow_rate < 0 or not 1 <= shadow_frames[0] <= shadow_frames[1]:
        raise ValueError(
            f"invalid mimic parameters: duct_rate={duct_rate} (>=0), shadow_rate={shadow_rate} (>=0), "
            f"shadow_frames={tuple(shadow_frames)} (1 <= min <= max)"
        )
    mimics = MimicRates(duct_rate, shadow_rate, tuple(shadow_frames))
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    plan = _plan_splits(rng, num_videos, test_videos, min_frames, max_frames, num_folds)
    total = sum(n for videos in plan.values() for _, _, n, _ in videos)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tqdm(total=total, desc=f"simulating {out_dir.name}", unit="frame", disable=not progress) as bar:
            for split, videos in plan.items():
                coco = _write_split(tmp, videos, size, mimics, bar)
                (tmp / f"{split}.json").write_text(json.dumps(coco, separators=(",", ":")))
        _replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` onto ``target``; an old ``target`` is moved aside first, then deleted."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
