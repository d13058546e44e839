import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ultradet.data import DatasetValidationError, validate_dataset


@pytest.fixture
def copy(tiny_dataset, tmp_path) -> Path:
    """A private copy of the tiny dataset to corrupt."""
    return Path(shutil.copytree(tiny_dataset, tmp_path / "copy"))


def _edit(root: Path, split: str, change) -> dict:
    path = root / f"{split}.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return data


def _problems(root: Path) -> list[str]:
    with pytest.raises(DatasetValidationError) as info:
        validate_dataset(root, progress=False)
    return info.value.problems


def _first_video(root: Path, split: str = "trainval") -> tuple[dict, list[dict]]:
    data = json.loads((root / f"{split}.json").read_text())
    video = data["videos"][0]
    return video, [im for im in data["images"] if im["video_id"] == video["id"]]


def test_tiny_dataset_is_valid_and_stats_add_up(tiny_dataset):
    stats = validate_dataset(tiny_dataset, progress=False)
    data = json.loads((tiny_dataset / "trainval.json").read_text())
    tv = stats["splits"]["trainval"]
    boxed = {a["image_id"] for a in data["annotations"]}
    assert tv["videos"] == 8 and tv["frames"] == len(data["images"]) and tv["boxes"] == len(data["annotations"])
    assert tv["frames_without_lesions"] == len(data["images"]) - len(boxed)
    assert sum(c["videos"] for c in tv["per_class"].values()) == 8
    assert {k: v["videos"] for k, v in tv["per_fold"].items()} == {"0": 2, "1": 2, "2": 2, "3": 2}
    assert stats["total"]["videos"] == 10


def test_missing_key(copy):
    _edit(copy, "trainval", lambda d: d["images"][3].pop("frame_id"))
    assert any("trainval.json: images[3]: 'frame_id' missing" in p for p in _problems(copy))


def test_ill_typed_key(copy):
    _edit(copy, "trainval", lambda d: d["images"][2].update(height="64"))
    assert any("images[2]: 'height' is not int" in p for p in _problems(copy))


def test_missing_section(copy):
    _edit(copy, "test", lambda d: d.pop("annotations"))
    assert "test.json: top-level key 'annotations' missing or not a list (not checked further)" in _problems(copy)


def test_json_without_videos_is_one_problem_not_one_per_image(copy):
    _edit(copy, "trainval", lambda d: d.pop("videos"))
    assert _problems(copy) == ["trainval.json: top-level key 'videos' missing or not a list (not checked further)"]


def test_missing_bbox_names_video_and_frame(copy):
    video, images = _first_video(copy)
    data = json.loads((copy / "trainval.json").read_text())
    index = next(i for i, a in enumerate(data["annotations"]) if a["image_id"] == images[0]["id"])
    frame = images[0]["frame_id"]
    _edit(copy, "trainval", lambda d: d["annotations"][index].pop("bbox"))
    assert f"trainval.json: video {video['name']} frame {frame}: annotations[{index}]: 'bbox' missing" in _problems(copy)


def test_category_id_not_in_categories(copy):
    video, images = _first_video(copy)
    data = json.loads((copy / "trainval.json").read_text())
    index = next(i for i, a in enumerate(data["annotations"]) if a["image_id"] == images[0]["id"])
    _edit(copy, "trainval", lambda d: d["annotations"][index].update(category_id=7))
    problem = f"trainval.json: video {video['name']} frame {images[0]['frame_id']}: category_id 7 is not in categories (ids [1])"
    assert _problems(copy) == [problem]


def test_truncated_png_fails_validation(copy):
    # The header (and size) are intact: only decoding every pixel finds it.
    video, images = _first_video(copy)
    path = copy / "rawframes" / images[3]["file_name"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with Image.open(path) as png:
        assert png.size == (images[3]["width"], images[3]["height"])
    problems = _problems(copy)
    assert len(problems) == 1 and problems[0].startswith(f"trainval.json: video {video['name']} frame 3: unreadable PNG {path}")


def test_missing_json(copy):
    (copy / "test.json").unlink()
    assert any("annotation file not found" in p and "test.json" in p for p in _problems(copy))


def test_dangling_video_id(copy):
    _edit(copy, "trainval", lambda d: d["images"][0].update(video_id=999))
    assert any("refers to missing video_id 999" in p for p in _problems(copy))


def test_dangling_image_id(copy):
    _edit(copy, "trainval", lambda d: d["annotations"][0].update(image_id=99999))
    assert any("annotation on missing image_id 99999" in p for p in _problems(copy))


def test_non_contiguous_frame_ids(copy):
    video, images = _first_video(copy)
    last = images[-1]["id"]
    _edit(copy, "trainval", lambda d: [im.update(frame_id=im["frame_id"] + 5) for im in d["images"] if im["id"] == last])
    assert any(f"video {video['name']}: frame ids are not contiguous" in p for p in _problems(copy))


def test_missing_png(copy):
    video, images = _first_video(copy)
    (copy / "rawframes" / images[1]["file_name"]).unlink()
    assert any(f"video {video['name']} frame 1: missing PNG" in p for p in _problems(copy))


def test_unreadable_png(copy):
    video, images = _first_video(copy)
    (copy / "rawframes" / images[2]["file_name"]).write_bytes(b"not a png")
    assert any(f"video {video['name']} frame 2: unreadable PNG" in p for p in _problems(copy))


def test_png_size_differs_from_json(copy):
    video, images = _first_video(copy)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(copy / "rawframes" / images[0]["file_name"])
    assert any(f"video {video['name']} frame 0" in p and "is 32x32, JSON says 64x64" in p for p in _problems(copy))


def test_box_with_non_positive_size(copy):
    _edit(copy, "trainval", lambda d: d["annotations"][0]["bbox"].__setitem__(2, 0))
    assert any("has non-positive size" in p for p in _problems(copy))


def test_box_outside_frame(copy):
    _edit(copy, "trainval", lambda d: d["annotations"][0].update(bbox=[60.0, 1.0, 10.0, 5.0]))
    assert any("box [60.0, 1.0, 10.0, 5.0] (xywh) lies outside the 64x64 frame" in p for p in _problems(copy))


def test_non_square_frame(copy):
    video, images = _first_video(copy)
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(copy / "rawframes" / images[0]["file_name"])
    first = images[0]["id"]
    _edit(copy, "trainval", lambda d: [im.update(height=48) for im in d["images"] if im["id"] == first])
    _edit(copy, "trainval", lambda d: d.update(annotations=[a for a in d["annotations"] if a["image_id"] != first]))
    assert _problems(copy) == [f"trainval.json: video {video['name']} frame 0: not square (64x48)"]


def test_duplicate_video(copy):
    video, images = _first_video(copy)
    twin = "benign/00000000000000ff"
    shutil.copytree(copy / "rawframes" / video["name"], copy / "rawframes" / twin)

    def add_twin(d):
        d["videos"].append({"id": 500, "name": twin})
        d["images"] += [dict(im, id=10_000 + im["id"], video_id=500, file_name=f"{twin}/{im['frame_id']:06d}.png")
                        for im in images]

    _edit(copy, "trainval", add_twin)
    assert _problems(copy) == [f"duplicate videos: trainval:{video['name']} and trainval:{twin} have identical frames"]


def test_patient_in_both_splits(copy):
    train_video, _ = _first_video(copy)
    test_video, _ = _first_video(copy, "test")
    leaked = f"{test_video['name'].split('/')[0]}/{train_video['name'].split('/')[1]}_2-L"
    (copy / "rawframes" / test_video["name"]).rename(copy / "rawframes" / leaked)
    _edit(copy, "test", lambda d: d["videos"][0].update(name=leaked))
    pid = train_video["name"].split("/")[1]
    assert _problems(copy) == [
        f"patient {pid} is in both test ({leaked}) and trainval ({train_video['name']}): patient-level leakage"
    ]


def test_every_problem_is_listed(copy):
    _edit(copy, "trainval", lambda d: d["annotations"][0]["bbox"].__setitem__(3, -1))
    _edit(copy, "test", lambda d: d["images"][0].update(video_id=77))
    with pytest.raises(DatasetValidationError) as info:
        validate_dataset(copy, progress=False)
    message = str(info.value)
    assert "failed validation with" in message
    assert "non-positive size" in message and "missing video_id 77" in message
