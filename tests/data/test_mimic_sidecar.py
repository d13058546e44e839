"""The generator's mimic sidecar: frames and ground truth unchanged by it, its boxes where the
rendered mimics are, and its format."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ultradet import mimic_sidecar
from ultradet.data.synthetic import MimicRates, generate_dataset, simulate_video, write
from ultradet.data.synthetic.render import Renderer
from ultradet.data.synthetic.scene import plan_video

# Many mimics in a few short small videos.
RICH = dict(num_videos=4, test_videos=1, min_frames=10, max_frames=14, size=64, seed=7, duct_rate=1.5, shadow_rate=3.0)
# sha256 of the decoded pixels of every frame and of both split JSONs of generate_dataset(**RICH), as
# written by the generator before it recorded mimics (commit 769e819): recording them draws
# nothing, so every frame and box stays bit-identical. Change them only with a deliberate change of
# the generator. The rendering's float arithmetic rounds differently on different CPUs (numpy's and
# OpenCV's SIMD paths), so each digest is commit 769e819's output on one machine: the CI machine of
# 2026-12-04, and an AVX2 AMD EPYC of 2026-12-05.
RICH_DIGESTS = {
    "7f396b352958e845014dd2eb9e627d38edab367a83b7decd413d38c2b7960e14",
    "586d292b410b0b959f403ac5b72cd4b2cf837dd8a1a13d43cefbd786c3c16f33",
}
# Beyond this many pixels outside its box (sideways or above) a mimic changes no pixel: its soft
# edge (<= 1.5 px), details thinner than the resolution cell that the box leaves out, and the
# point-spread and beam-width blurs (3 px each at 64 px). Below the box its posterior shadowing
# or enhancement reaches down the whole frame.
OUTSIDE_PX = 6


@pytest.fixture(scope="module")
def rich(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("rich") / "d", progress=False, **RICH)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix == ".png":
            h.update(str(path.relative_to(root)).encode() + cv2.imread(str(path), cv2.IMREAD_UNCHANGED).tobytes())
        elif path.name in ("trainval.json", "test.json"):
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_frames_and_ground_truth_are_those_of_the_generator_before_the_sidecar(rich):
    assert _digest(rich) in RICH_DIGESTS
    assert sorted(p.name for p in rich.iterdir()) == ["rawframes", "test.json", "test_mimics.json", "trainval.json", "trainval_mimics.json"]


def test_sidecar_lists_every_video_and_the_generator_s_kinds(rich):
    for split in ("trainval", "test"):
        sidecar = json.loads(mimic_sidecar.sidecar_path(rich, split).read_text())
        gt = json.loads((rich / f"{split}.json").read_text())
        assert sidecar["format"] == "ultradet-mimics" and sidecar["version"] == 1 and sidecar["split"] == split
        assert sidecar["kinds"] == ["duct", "shadow"]
        assert [(v["video_id"], v["name"]) for v in sidecar["videos"]] == [(v["id"], v["name"]) for v in gt["videos"]]
        frame_ids = {(im["video_id"], im["frame_id"]) for im in gt["images"]}
        for video in sidecar["videos"]:
            for mimic in video["mimics"]:
                assert {(video["video_id"], int(t)) for t in mimic["frames"]} <= frame_ids
    kinds = {m["kind"] for v in json.loads((rich / "trainval_mimics.json").read_text())["videos"] for m in v["mimics"]}
    assert kinds == {"duct", "shadow"}


def _video_plans() -> dict[str, list[tuple[str, str, int, int]]]:
    """The (id, label, frames, seed) of every video, as generate_dataset(**RICH) draws them."""
    rng = np.random.default_rng(RICH["seed"])
    return write._plan_splits(rng, RICH["num_videos"], RICH["test_videos"], RICH["min_frames"], RICH["max_frames"], 4)


def test_sidecar_boxes_are_the_simulated_mimics_boxes(rich):
    rates = MimicRates(RICH["duct_rate"], RICH["shadow_rate"])
    for split, videos in _video_plans().items():
        sidecar = json.loads(mimic_sidecar.sidecar_path(rich, split).read_text())
        for (key, label, num_frames, seed), video in zip(videos, sidecar["videos"]):
            expected: dict[int, dict] = {}
            frames = simulate_video(seed, size=RICH["size"], num_frames=num_frames, label=label, mimics=rates)
            for t, (_, objects) in enumerate(frames):
                for obj in objects:
                    if obj.kind != "lesion":
                        x, y, w, h = obj.box
                        entry = expected.setdefault(obj.instance, {"instance": obj.instance, "kind": obj.kind, "frames": {}})
                        entry["frames"][str(t)] = [x, y, x + w, y + h]
            assert video["name"] == f"{label}/{key}"
            assert video["mimics"] == [expected[i] for i in sorted(expected)]


def _with_and_without(label: str, num_frames: int, seed: int, instance: int):
    """Yield (t, frame, the same frame rendered without mass ``instance``) for every frame of a video:
    the same plan minus that mass, the same random draws (scatterers, noise)."""
    rng = np.random.default_rng(seed)
    plan = plan_video(rng, RICH["size"], num_frames, label, MimicRates(RICH["duct_rate"], RICH["shadow_rate"]))
    state = rng.bit_generator.state
    full = Renderer(plan, rng)
    twin = np.random.default_rng()
    twin.bit_generator.state = state
    others = tuple(m for i, m in enumerate(plan.masses, start=1) if i != instance)
    without = Renderer(dataclasses.replace(plan, masses=others), twin)
    for t in range(num_frames):
        yield t, full.frame(t)[0], without.frame(t)[0]


def test_sidecar_boxes_are_where_the_rendered_mimics_change_the_frame(rich):
    size = RICH["size"]
    rows, cols = np.mgrid[:size, :size]
    edges_changed, changed_fraction = [], []
    for split, videos in _video_plans().items():
        sidecar = json.loads(mimic_sidecar.sidecar_path(rich, split).read_text())
        for (_, label, num_frames, seed), video in zip(videos, sidecar["videos"]):
            for mimic in video["mimics"]:
                for t, frame, without in _with_and_without(label, num_frames, seed, mimic["instance"]):
                    if str(t) not in mimic["frames"]:
                        continue
                    written = cv2.imread(str(rich / "rawframes" / video["name"] / f"{t:06d}.png"), cv2.IMREAD_UNCHANGED)
                    assert np.array_equal(written, frame)
                    x1, y1, x2, y2 = (int(v) for v in mimic["frames"][str(t)])
                    changed = frame != without
                    # Sideways of the box or above it: unchanged beyond OUTSIDE_PX (beneath: the mimic's shadow).
                    outside = np.maximum(np.maximum(x1 - cols, cols - (x2 - 1)), y1 - rows)
                    assert not changed[outside > OUTSIDE_PX].any(), (video["name"], mimic["kind"], t)
                    box = changed[y1:y2, x1:x2]
                    assert box.any()
                    changed_fraction.append(box.mean())
                    edges_changed.append(all(strip.any() for strip in (box[:3], box[-3:], box[:, :3], box[:, -3:])))
    assert len(changed_fraction) > 50
    # The box is no larger than the mimic: most of it changes, and its edges do, except where the
    # frame is black (log compression clips it) with and without the mimic.
    assert np.median(changed_fraction) > 0.75
    assert np.mean(edges_changed) >= 0.9


def test_parse_flattens_the_boxes():
    side = mimic_sidecar.sidecar_dict(
        "test", ("shadow", "duct"),
        [{"video_id": 3, "name": "benign/a", "mimics": [
            {"instance": 2, "kind": "shadow", "frames": {"4": [1, 2, 5, 6], "5": [1.5, 2, 5, 6.5]}},
            {"instance": 3, "kind": "duct", "frames": {7: [0, 0, 3, 3]}}]},
         {"video_id": 4, "name": "malignant/b", "mimics": []}],
    )
    boxes = mimic_sidecar.parse(json.loads(mimic_sidecar.dumps(side)))
    assert boxes.kinds == ("duct", "shadow") and boxes.videos == {3: "benign/a", 4: "malignant/b"}
    assert boxes.video_id.tolist() == [3, 3, 3] and boxes.frame_id.tolist() == [4, 5, 7]
    assert boxes.kind.tolist() == [1, 1, 0]
    assert boxes.boxes.tolist() == [[1, 2, 5, 6], [1.5, 2, 5, 6.5], [0, 0, 3, 3]]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(format="coco"), "'format' must be 'ultradet-mimics'"),
        (lambda s: s.update(version=2), "version 2"),
        (lambda s: s.update(kinds=["duct", "duct"]), "distinct"),
        (lambda s: s["videos"][0]["mimics"][0].update(kind="cyst"), r"videos\[0\] \(benign/a\) mimics\[0\]: needs a 'kind' among \['duct'\]"),
        (lambda s: s["videos"][0]["mimics"][0]["frames"].update({"x": [0, 0, 1, 1]}), "frame key 'x' is not a frame_id"),
        (lambda s: s["videos"][0]["mimics"][0]["frames"].update({"2": [5, 0, 1, 1]}), r"frame 2: box \[5, 0, 1, 1\] is not \[x1, y1, x2, y2\]"),
        (lambda s: s["videos"].append(dict(s["videos"][0])), "video_id 1 is listed twice"),
    ],
)
def test_malformed_sidecar_is_named(change, message):
    side = {"format": "ultradet-mimics", "version": 1, "split": "test", "kinds": ["duct"],
            "videos": [{"video_id": 1, "name": "benign/a", "mimics": [{"instance": 2, "kind": "duct", "frames": {"0": [0, 0, 2, 2]}}]}]}
    change(side)
    with pytest.raises(mimic_sidecar.MimicSidecarError, match=message):
        mimic_sidecar.parse(side)


def test_read_names_the_file(tmp_path):
    path = tmp_path / "test_mimics.json"
    path.write_text("{")
    with pytest.raises(mimic_sidecar.MimicSidecarError, match="test_mimics.json: not valid JSON"):
        mimic_sidecar.read(path)
    path.write_text(json.dumps({"format": "ultradet-mimics", "version": 1, "kinds": []}))
    with pytest.raises(mimic_sidecar.MimicSidecarError, match="test_mimics.json: mimic sidecar header: no 'videos' list"):
        mimic_sidecar.read(path)
