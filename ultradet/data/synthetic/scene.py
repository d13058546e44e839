"""Planning one simulated video: the 3D phantom (tissue interfaces and texture, lesions, lesion
mimics, Cooper's ligaments) and the probe's motion, drawn from one generator. The physical model
is described in :mod:`ultradet.data.synthetic`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Average round-trip-halved attenuation over the whole depth, nepers (lengths scale with the
# frame size ``s``); the renderer's time-gain compensation is drawn around it.
TISSUE_MU = 1.45
_LESION_REDRAWS = 50  # placements tried for a second lesion that must not meet the first
# The kinds of lesion mimic (Mass.kind, module docstring of ultradet.data.synthetic): ducts and
# vessels, shadow/refraction artefacts. The mimic sidecar lists them.
DUCT, SHADOW = "duct", "shadow"
MIMIC_KINDS = (DUCT, SHADOW)


# ----------------------------------------------------------------------------- phantom structures
# ----------------------------------------------------------------------------- phantom structures
@dataclass(frozen=True)
class Mass:
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
class Ligament:
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
class VideoPlan:
    """Everything needed to render one video's frames."""

    size: int
    label: str
    elevation: np.ndarray  # (T,) y(t), pixels
    lateral: np.ndarray  # (T,) integer probe drift, pixels
    interfaces: np.ndarray  # (3, 3, 4): per interface, 3 waves of (amp, fx, fy, phase) ; row 0 amp = base
    texture: np.ndarray  # (Gy, Gz, Gx) coarse 3D noise
    texture_dy: float
    masses: tuple[Mass, ...]
    ligaments: tuple[Ligament, ...]
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
        reflectivity=refl, mu=mu * TISSUE_MU / s, edge_px=edge, rim=rim,
    )


def _depth(rng: np.random.Generator, half_height: float, top: float, bottom: float) -> float:
    """A centre depth that keeps a structure of ``half_height`` inside the glandular layer."""
    return rng.uniform(top + 1.1 * half_height, max(top + 1.1 * half_height, bottom - 1.1 * half_height))


def _lesion(rng: np.random.Generator, s: int, label: str, y0: float, top: float, bottom: float) -> Mass:
    shape = _cross_section(rng, s, label)
    return Mass(
        x0=rng.uniform(0.25, 0.75) * s, z0=_depth(rng, shape["az"], top, bottom), y0=y0,
        ay=shape["ax"] * rng.uniform(1.2, 1.8), kind="lesion", **shape,
    )


def _lesions(
    rng: np.random.Generator, s: int, label: str, centres: np.ndarray, centre_range: tuple[float, float],
    top: float, bottom: float,
) -> list[Mass]:
    """One lesion per elevation centre. Two masses cannot fill the same tissue, and where their
    cross-sections overlapped in a frame the boxes would nest, which no annotator draws: a lesion
    whose extent meets an earlier one's is redrawn (position along the sweep included), up to
    ``_LESION_REDRAWS`` times; a video with no room for the second lesion keeps one."""
    lesions: list[Mass] = []
    for centre in centres:
        for _ in range(_LESION_REDRAWS):
            lesion = _lesion(rng, s, label, float(centre), top, bottom)
            if not any(_intersects(lesion, other) for other in lesions):
                lesions.append(lesion)
                break
            centre = rng.uniform(*centre_range)
    return lesions


def _intersects(a: Mass, b: Mass) -> bool:
    """Whether two lesions' bounding extents (outline harmonics and spicules included) overlap on
    all three axes: lateral x, depth z and elevation y."""
    ra, rb = outer_radius(a), outer_radius(b)
    in_plane = ra * max(a.ax, a.az) + rb * max(b.ax, b.az)  # any in-plane tilt
    return abs(a.x0 - b.x0) < in_plane and abs(a.z0 - b.z0) < in_plane and abs(a.y0 - b.y0) < ra * a.ay + rb * b.ay


def outer_radius(mass: Mass) -> float:
    """The largest normalised radius ``r(theta, y)`` of the outline (module docstring of Mass)."""
    return 1.0 + float(np.abs(mass.harmonics[:, 1]).sum()) + mass.spikes[1]


def _duct(rng: np.random.Generator, s: int, y_lo: float, y_hi: float, top: float, bottom: float) -> Mass:
    """A fluid-filled tube along the sweep: a benign-looking oval cross-section of constant size,
    fluid-dark inside with an echogenic wall, drifting sideways (slope) as the plane moves along it."""
    shape = _cross_section(rng, s, "benign")
    shape["harmonics"][:, 3] = 0.0  # a straight tube: the outline does not twist along it
    shape["reflectivity"] *= rng.uniform(0.5, 1.0)  # fluid: fewer internal echoes
    shape["rim"] = rng.uniform(0.2, 0.6)  # the duct/vessel wall
    span = (y_hi - y_lo) * rng.uniform(0.3, 0.7)
    start = rng.uniform(y_lo - 0.1 * span, y_hi - 0.9 * span)
    return Mass(
        x0=rng.uniform(0.25, 0.75) * s, z0=_depth(rng, shape["az"], top, bottom), y0=start + span / 2,
        ay=np.inf, kind=DUCT, y_range=(start, start + span),
        slope=float(rng.choice([-1.0, 1.0]) * rng.uniform(0.15, 0.5)), taper=0.04 * s, **shape,
    )


def _shadow(
    rng: np.random.Generator, s: int, elevation: np.ndarray, frames: tuple[int, int], top: float, bottom: float
) -> Mass:
    """A refraction / Cooper's-ligament shadow: a mass-like hypoechoic region (outline of either
    lesion style) with a blurred margin that shadows what lies beneath, and exists at full size
    for ``frames`` frames of the sweep, then vanishes."""
    shape = _cross_section(rng, s, str(rng.choice(["benign", "malignant"])))
    shape["edge_px"] *= rng.uniform(1.0, 3.0)  # ill-defined margin
    shape["rim"] = 0.0
    shape["reflectivity"] = rng.uniform(0.012, 0.035)  # tissue that receives less of the beam
    shape["mu"] = rng.uniform(2.0, 4.0) * TISSUE_MU / s  # what lies beneath is shadowed too
    per_frame = float(np.abs(np.diff(elevation)).mean()) if len(elevation) > 1 else 1.0
    half = 0.5 * per_frame * rng.integers(frames[0], frames[1] + 1)
    y0 = rng.uniform(elevation.min(), elevation.max())
    return Mass(
        x0=rng.uniform(0.2, 0.8) * s, z0=_depth(rng, shape["az"], top, bottom), y0=y0, ay=np.inf,
        kind=SHADOW, y_range=(y0 - half, y0 + half), **shape,
    )


def _ligament(rng: np.random.Generator, s: int, y_lo: float, y_hi: float, fat_bottom: float) -> Ligament:
    xa = rng.uniform(0.1, 0.9) * s
    thickness = max(1.0, 0.012 * s)
    return Ligament(
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


def plan_video(rng: np.random.Generator, s: int, n: int, label: str, mimics: MimicRates) -> VideoPlan:
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
    return VideoPlan(
        size=s, label=label, elevation=elevation, lateral=lateral, interfaces=waves,
        texture=texture, texture_dy=texture_dy, masses=tuple(masses), ligaments=ligaments,
        gain_db=rng.uniform(-2.0, 2.0), tgc_mu=TISSUE_MU / s * rng.uniform(0.85, 1.05),
    )

