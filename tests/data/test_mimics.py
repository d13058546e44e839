"""The embedded dataset's lesion mimics (issue: negative temporal contexts): one frame cannot tell
them from lesions, time can."""

from collections import defaultdict

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from ultradet.data.synthetic import MimicRates, simulate_video

# Many mimics per video, so that a few short videos give enough of each kind.
RICH = MimicRates(duct_rate=1.5, shadow_rate=3.0)


@pytest.fixture(scope="module")
def tracks() -> dict[str, list[list]]:
    """kind -> one list per structure of its :class:`SimulatedObject` s, frame by frame."""
    per_structure = defaultdict(list)
    for seed in range(16):
        label = "malignant" if seed % 2 else "benign"
        for image, objects in simulate_video(seed, size=128, num_frames=60, label=label, mimics=RICH):
            for obj in objects:
                per_structure[(seed, obj.instance, obj.kind)].append(obj)
    by_kind = defaultdict(list)
    for (_, _, kind), objs in per_structure.items():
        by_kind[kind].append(objs)
    return by_kind


def _auc(lesion: list[float], mimic: list[float]) -> float:
    """P(statistic of a mimic > that of a lesion): 0.5 = indistinguishable, 0 or 1 = separated."""
    u = mannwhitneyu(mimic, lesion, alternative="two-sided").statistic
    return u / (len(lesion) * len(mimic))


def _single_frame(tracks: dict, kinds: tuple[str, ...], stat) -> list[float]:
    return [stat(obj) for kind in kinds for track in tracks[kind] for obj in track]


def test_every_kind_occurs(tracks):
    assert len(tracks["lesion"]) >= 10 and len(tracks["duct"]) >= 10 and len(tracks["shadow"]) >= 10


@pytest.mark.parametrize(
    "name, stat",
    [
        ("mean intensity", lambda o: o.mean_grey),
        ("aspect ratio", lambda o: o.box[2] / o.box[3]),
        ("dark-region area", lambda o: o.area),
    ],
)
def test_single_frame_statistics_overlap(tracks, name, stat):
    lesion = _single_frame(tracks, ("lesion",), stat)
    for kind in ("duct", "shadow"):
        auc = _auc(lesion, _single_frame(tracks, (kind,), stat))
        # Overlapping distributions: the statistic ranks a random mimic above a random lesion
        # between 20 % and 80 % of the time (perfect separation would be 0 % or 100 %).
        assert 0.2 < auc < 0.8, f"{name} separates {kind}s from lesions (AUC {auc:.2f})"


def _size_persistence(track: list) -> float:
    """Fraction of the frames a structure is visible in which its area is >= 80 % of its peak:
    a 3D mass grows and shrinks (low), a tube or a flickering shadow keeps its size (high)."""
    areas = np.array([obj.area for obj in track], float)
    return float((areas >= 0.8 * areas.max()).mean())


def test_size_persistence_separates_mimics_from_lesions(tracks):
    lesion = [_size_persistence(t) for t in tracks["lesion"]]
    for kind in ("duct", "shadow"):
        mimic = [_size_persistence(t) for t in tracks[kind]]
        assert _auc(lesion, mimic) > 0.95, (kind, sorted(lesion), sorted(mimic))


def test_ducts_drift_sideways_and_shadows_flicker(tracks):
    drifts = [abs(t[-1].box[0] - t[0].box[0]) / len(t) for t in tracks["duct"] if len(t) >= 10]
    assert np.median(drifts) > 0.1  # pixels per frame at 128 px
    # A shadow lasts a few frames (more where the wobbling sweep crosses it twice); a lesion many.
    assert np.median([len(t) for t in tracks["shadow"]]) <= 5
    assert np.median([len(t) for t in tracks["lesion"]]) >= 15
