import json

import numpy as np
import pytest

from ultradet.data import load_videos, validate_dataset


def test_generate_validate_load_round_trip(tiny_dataset):
    stats = validate_dataset(tiny_dataset, progress=False)
    for split in ("trainval", "test"):
        videos = load_videos(tiny_dataset, split)
        assert [v.name for v in videos] == sorted(v.name for v in videos)
        assert len(videos) == stats["splits"][split]["videos"]
        assert sum(v.num_frames for v in videos) == stats["splits"][split]["frames"]
        assert sum(len(f.boxes) for v in videos for f in v.frames) == stats["splits"][split]["boxes"]
        for v in videos:
            assert v.label == v.name.split("/")[0] and v.patient_id == v.key
            assert [f.frame_id for f in v.frames] == list(range(v.num_frames))
            assert all(f.path.is_file() and f.path.is_absolute() for f in v.frames)


def test_boxes_are_xyxy_with_track_ids(tiny_dataset):
    data = json.loads((tiny_dataset / "trainval.json").read_text())
    ann = data["annotations"][0]
    x, y, w, h = ann["bbox"]
    frame = next(f for v in load_videos(tiny_dataset) for f in v.frames if f.image_id == ann["image_id"])
    row = [i for i, t in enumerate(frame.track_ids) if t == ann["instance_id"]][0]
    assert frame.boxes.dtype == np.float32 and frame.track_ids.dtype == np.int64
    np.testing.assert_allclose(frame.boxes[row], [x, y, x + w, y + h], rtol=1e-6)


def test_path_uses_only_the_basename_of_file_name(tiny_dataset, tmp_path):
    data = json.loads((tiny_dataset / "trainval.json").read_text())
    for im in data["images"]:
        im["file_name"] = "some/other/dir/" + im["file_name"].rsplit("/", 1)[1]
    (tmp_path / "trainval.json").write_text(json.dumps(data))
    (tmp_path / "rawframes").symlink_to(tiny_dataset / "rawframes")
    assert all(f.path.is_file() for v in load_videos(tmp_path) for f in v.frames)


def test_missing_json_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="trainval.json"):
        load_videos(tmp_path)


def test_malformed_json_names_the_file(tmp_path):
    (tmp_path / "trainval.json").write_text(json.dumps({"videos": [{"id": 1}], "images": [], "annotations": []}))
    with pytest.raises(ValueError, match="trainval.json: malformed entry"):
        load_videos(tmp_path)
