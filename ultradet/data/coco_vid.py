"""Loading a COCO-VID video dataset in the CVA-BUS layout (spec section 1) into records."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ultradet.data.errors import DatasetError, DatasetNotFoundError
from ultradet.data.folds import fold_of, patient_id
from ultradet.data.records import FrameRecord, VideoRecord


def read_json(path: Path) -> dict:
    """Parse a split JSON.

    Raises:
        DatasetNotFoundError: (a ``FileNotFoundError``) naming the missing file.
        DatasetError: (a ``ValueError``) the file is not a JSON object.
    """
    if not path.is_file():
        raise DatasetNotFoundError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: top level must be an object, got {type(data).__name__}")
    return data


def frame_path(root: Path, video_name: str, file_name: str) -> Path:
    """``root/rawframes/<video name>/<basename(file_name)>`` (only the basename of ``file_name``
    is used, as in the original)."""
    return root / "rawframes" / video_name / file_name.replace("\\", "/").rsplit("/", 1)[-1]


def xywh_to_xyxy(bbox) -> list[float]:
    """COCO ``[x, y, w, h]`` -> ``[x1, y1, x2, y2]`` (absolute pixels)."""
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def load_videos(root: str | Path, split: str = "trainval", *, num_folds: int = 4) -> list[VideoRecord]:
    """Load ``<root>/<split>.json`` into :class:`VideoRecord` s sorted by ``name``.

    Frames are ordered by ``frame_id``; boxes are converted to XYXY absolute pixels (float32);
    ``patient_id`` and ``fold`` follow spec section 1 (``fold_of(patient_id, num_folds)``).
    This trusts the JSON's structure: run :func:`ultradet.data.validate_dataset` on untrusted
    data first (the prepare stage does).

    Raises:
        DatasetNotFoundError: the JSON is missing.
        DatasetError: the JSON is not valid, or a key is missing (the message names file and key).
    """
    root = Path(root).resolve()
    path = root / f"{split}.json"
    data = read_json(path)
    try:
        return _records(root, data, num_folds)
    except (KeyError, TypeError, IndexError) as exc:
        raise DatasetError(f"{path}: malformed entry ({exc!r}); run validate_dataset for a full report") from exc


def _records(root: Path, data: dict, num_folds: int) -> list[VideoRecord]:
    boxes, tracks = defaultdict(list), defaultdict(list)
    for ann in data["annotations"]:
        boxes[ann["image_id"]].append(xywh_to_xyxy(ann["bbox"]))
        tracks[ann["image_id"]].append(int(ann["instance_id"]))
    images = defaultdict(list)
    for image in data["images"]:
        images[image["video_id"]].append(image)
    videos = []
    for video in data["videos"]:
        name = video["name"]
        frames = tuple(
            FrameRecord(
                image_id=int(im["id"]), frame_id=int(im["frame_id"]), path=frame_path(root, name, im["file_name"]),
                height=int(im["height"]), width=int(im["width"]),
                boxes=np.asarray(boxes.get(im["id"], []), np.float32).reshape(-1, 4),
                track_ids=np.asarray(tracks.get(im["id"], []), np.int64),
            )
            for im in sorted(images[video["id"]], key=lambda im: im["frame_id"])
        )
        pid = patient_id(name)
        videos.append(
            VideoRecord(video_id=int(video["id"]), name=name, label=name.split("/")[0], patient_id=pid,
                        fold=fold_of(pid, num_folds), frames=frames)
        )
    return sorted(videos, key=lambda v: v.name)
