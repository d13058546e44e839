"""Validation of a COCO-VID dataset in the CVA-BUS layout before anything trains on it.

Every problem is collected (not just the first), each naming the file, video or frame and what
is wrong, so a user fixes a broken copy in one pass. Checks (spec section 1 and the CVA-Net
errata, spec section 7): JSON keys and types; dangling image/video/category ids; contiguous
frame ids; PNGs present, fully decodable (a truncated file fails here, not minutes into a later
stage) and of the JSON's size; boxes of positive size inside the frame; square frames; duplicate
videos (identical frames under two names); one patient in both splits. A split whose JSON lacks a
top-level section is reported once and not checked further.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ultradet.box_rules import box_problem
from ultradet.data.coco_vid import frame_path, read_json
from ultradet.data.errors import DatasetError
from ultradet.data.folds import fold_of, patient_id

_INT, _STR, _NUM = (int,), (str,), (int, float)
_SCHEMA = {
    "videos": {"id": _INT, "name": _STR},
    "images": {"id": _INT, "video_id": _INT, "frame_id": _INT, "file_name": _STR, "height": _INT, "width": _INT},
    "annotations": {"image_id": _INT, "bbox": (list,), "instance_id": _INT},
}


class DatasetValidationError(DatasetError):
    """A dataset failed validation. ``problems`` lists every problem found (readable strings);
    the message is a summary listing all of them."""

    def __init__(self, root: Path, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"dataset {root} failed validation with {len(problems)} problem(s):\n{lines}")


def _typed(value, types: tuple) -> bool:
    return isinstance(value, types) and not isinstance(value, bool)


def _check_sections(data: dict, where: str, problems: list[str]) -> bool:
    """One problem per top-level section that is missing or not a list; True if all are lists."""
    missing = [section for section in _SCHEMA if not isinstance(data.get(section), list)]
    problems += [f"{where}: top-level key '{section}' missing or not a list (not checked further)" for section in missing]
    return not missing


def _entry_name(section: str, i: int, entry, valid: dict[str, list[dict]]) -> str:
    """``annotations[i]`` named by its video and frame when its ``image_id`` is known, else by index."""
    if section == "annotations" and isinstance(entry, dict):
        images = {im["id"]: im for im in valid["images"]}
        im = images.get(entry.get("image_id"))
        if im is not None:
            names = {v["id"]: v["name"] for v in valid["videos"]}
            return f"video {names.get(im['video_id'], im['video_id'])} frame {im['frame_id']}: annotations[{i}]"
    return f"{section}[{i}]"


def _check_schema(data: dict, where: str, problems: list[str]) -> dict[str, list[dict]]:
    """Entries of each section whose keys are present and well typed; problems for the rest
    (every section must be a list, see :func:`_check_sections`)."""
    valid = {}
    for section, fields in _SCHEMA.items():
        valid[section] = []
        for i, entry in enumerate(data[section]):
            bad = [f"'{k}' missing" if not isinstance(entry, dict) or k not in entry else f"'{k}' is not {types[0].__name__}"
                   for k, types in fields.items() if not isinstance(entry, dict) or not _typed(entry.get(k), types)]
            if section == "annotations" and not bad and not (
                len(entry["bbox"]) == 4 and all(_typed(v, _NUM) for v in entry["bbox"])
            ):
                bad.append(f"'bbox' is not 4 numbers: {entry['bbox']!r}")
            if bad:
                problems.append(f"{where}: {_entry_name(section, i, entry, valid)}: {', '.join(bad)}")
            else:
                valid[section].append(entry)
    return valid


def _check_references(sections: dict, where: str, problems: list[str]) -> None:
    video_ids = Counter(v["id"] for v in sections["videos"])
    image_ids = Counter(im["id"] for im in sections["images"])
    problems += [f"{where}: duplicate video id {i}" for i, n in video_ids.items() if n > 1]
    problems += [f"{where}: duplicate image id {i}" for i, n in image_ids.items() if n > 1]
    problems += [f"{where}: image {im['id']} ({im['file_name']}) refers to missing video_id {im['video_id']}"
                 for im in sections["images"] if im["video_id"] not in video_ids]
    problems += [f"{where}: annotation on missing image_id {a['image_id']}"
                 for a in sections["annotations"] if a["image_id"] not in image_ids]


def _check_categories(data: dict, sections: dict, names: dict[int, str], where: str, problems: list[str]) -> None:
    """Every annotation's ``category_id`` (when it has one) must be an id of ``categories``."""
    categories = data.get("categories")
    if not any("category_id" in ann for ann in sections["annotations"]):
        return
    if not isinstance(categories, list):
        problems.append(f"{where}: annotations have a category_id but top-level key 'categories' is missing or not a list")
        return
    known = {c.get("id") for c in categories if isinstance(c, dict)}
    images = {im["id"]: im for im in sections["images"]}
    for ann in sections["annotations"]:
        if "category_id" in ann and ann["category_id"] not in known and ann["image_id"] in images:
            im = images[ann["image_id"]]
            problems.append(f"{where}: video {names.get(im['video_id'], im['video_id'])} frame {im['frame_id']}: "
                            f"category_id {ann['category_id']!r} is not in categories (ids {sorted(known, key=str)})")


def _check_frames(video: dict, images: list[dict], where: str, problems: list[str]) -> None:
    name = video["name"]
    frame_ids = sorted(im["frame_id"] for im in images)
    if frame_ids != list(range(len(images))):
        problems.append(f"{where}: video {name}: frame ids are not contiguous 0..{len(images) - 1}: "
                        f"{_short(frame_ids)}")
    for im in images:
        if im["height"] != im["width"]:
            problems.append(f"{where}: video {name} frame {im['frame_id']}: not square ({im['width']}x{im['height']})")


def _short(values: list) -> str:
    return str(values) if len(values) <= 12 else f"{values[:6]} ... {values[-6:]}"


def _png_problem(root: Path, video: dict, im: dict, where: str) -> str | None:
    """Decode one frame's PNG completely; the problem with it, or None."""
    path = frame_path(root, video["name"], im["file_name"])
    frame = f"{where}: video {video['name']} frame {im['frame_id']}"
    try:
        with Image.open(path) as png:
            size = png.size
            png.load()  # decodes every pixel: a truncated or corrupt file raises here
    except FileNotFoundError:
        return f"{frame}: missing PNG {path}"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"{frame}: unreadable PNG {path} ({exc})"
    if size != (im["width"], im["height"]):
        return f"{frame}: PNG {path} is {size[0]}x{size[1]}, JSON says {im['width']}x{im['height']}"
    return None


def _check_pngs(root: Path, video: dict, images: list[dict], where: str, problems: list[str], pool: Executor) -> None:
    """Decode every frame of ``video`` once, in parallel on ``pool`` (Pillow's decoder releases
    the GIL); problems are appended in frame order."""
    found = pool.map(lambda im: _png_problem(root, video, im, where), images)
    problems += [p for p in found if p is not None]


def _check_boxes(sections: dict, names: dict[int, str], where: str, problems: list[str]) -> None:
    images = {im["id"]: im for im in sections["images"]}
    for ann in sections["annotations"]:
        im = images.get(ann["image_id"])
        if im is None:
            continue
        problem = box_problem(ann["bbox"], im["width"], im["height"])
        if problem is not None:
            problems.append(f"{where}: video {names.get(im['video_id'], im['video_id'])} frame {im['frame_id']}: {problem}")


def _signature(paths: list[Path]) -> str | None:
    """Cheap fingerprint of a video: sha256 of its first and middle frames' bytes."""
    try:
        picked = [paths[0], paths[len(paths) // 2]]
        return hashlib.sha256(b"".join(p.read_bytes() for p in picked)).hexdigest()
    except (OSError, IndexError):
        return None


def _same_frames(a: list[Path], b: list[Path]) -> bool:
    return len(a) == len(b) and all(pa.read_bytes() == pb.read_bytes() for pa, pb in zip(a, b))


def _check_duplicates(frames: dict[str, list[Path]], problems: list[str]) -> None:
    """Videos with byte-identical frames under two names (the CVA-Net errata had one)."""
    by_signature = defaultdict(list)
    for name, paths in frames.items():
        signature = _signature(paths)
        if signature is not None:
            by_signature[signature].append(name)
    for names in by_signature.values():
        for i, first in enumerate(names):
            for second in names[i + 1:]:
                if _same_frames(frames[first], frames[second]):
                    problems.append(f"duplicate videos: {first} and {second} have identical frames")


def _check_leakage(patients: dict[str, dict[str, list[str]]], problems: list[str]) -> None:
    splits = sorted(patients)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            for pid in sorted(set(patients[a]) & set(patients[b])):
                problems.append(f"patient {pid} is in both {a} ({', '.join(patients[a][pid])}) and "
                                f"{b} ({', '.join(patients[b][pid])}): patient-level leakage")


def _split_stats(sections: dict, by_video: dict[int, list[dict]], num_folds: int) -> dict:
    boxes_per_image = Counter(a["image_id"] for a in sections["annotations"])
    stats = {"videos": 0, "frames": 0, "boxes": 0, "frames_without_lesions": 0, "per_class": {}, "per_fold": {}}
    for video in sections["videos"]:
        images = by_video.get(video["id"], [])
        boxes = sum(boxes_per_image[im["id"]] for im in images)
        row = {"videos": 1, "frames": len(images), "boxes": boxes,
               "frames_without_lesions": sum(boxes_per_image[im["id"]] == 0 for im in images)}
        label, fold = video["name"].split("/")[0], str(fold_of(patient_id(video["name"]), num_folds))
        for bucket in (stats, stats["per_class"].setdefault(label, dict.fromkeys(row, 0)),
                       stats["per_fold"].setdefault(fold, dict.fromkeys(row, 0))):
            for key, value in row.items():
                bucket[key] += value
    stats["per_fold"] = dict(sorted(stats["per_fold"].items()))
    return stats


def validate_dataset(
    root: str | Path, *, splits: Iterable[str] = ("trainval", "test"), num_folds: int = 4, progress: bool = True
) -> dict:
    """Check a dataset (``<root>/rawframes``, ``<root>/<split>.json``) and return its statistics.

    Returns:
        ``{"splits": {split: stats}, "total": {"videos", "frames", "boxes"}}``; a split's stats
        hold ``videos``, ``frames``, ``boxes``, ``frames_without_lesions`` and the same counts
        ``per_class`` (class folder: benign/malignant) and ``per_fold`` (``fold_of(patient_id,
        num_folds)``, as strings; informative only for the test split).

    Raises:
        DatasetValidationError: listing every problem (see the module docstring).
    """
    root = Path(root)
    problems: list[str] = []
    frames: dict[str, list[Path]] = {}
    patients: dict[str, dict[str, list[str]]] = {}
    stats = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for split in splits:
            where = f"{split}.json"
            try:
                data = read_json(root / where)
            except (FileNotFoundError, ValueError) as exc:
                problems.append(str(exc))
                continue
            if not _check_sections(data, where, problems):
                continue
            sections = _check_schema(data, where, problems)
            _check_references(sections, where, problems)
            by_video = defaultdict(list)
            for im in sections["images"]:
                by_video[im["video_id"]].append(im)
            names = {v["id"]: v["name"] for v in sections["videos"]}
            _check_categories(data, sections, names, where, problems)
            _check_boxes(sections, names, where, problems)
            patients[split] = defaultdict(list)
            for video in tqdm(sections["videos"], desc=f"validating {split}", unit="video", disable=not progress):
                images = sorted(by_video.get(video["id"], []), key=lambda im: im["frame_id"])
                if not images:
                    problems.append(f"{where}: video {video['name']} has no images")
                    continue
                _check_frames(video, images, where, problems)
                _check_pngs(root, video, images, where, problems, pool)
                key = f"{split}:{video['name']}"
                frames[key] = [frame_path(root, video["name"], im["file_name"]) for im in images]
                patients[split][patient_id(video["name"])].append(video["name"])
            stats[split] = _split_stats(sections, by_video, num_folds)
    _check_duplicates(frames, problems)
    _check_leakage(patients, problems)
    if problems:
        raise DatasetValidationError(root, problems)
    total = {k: sum(s[k] for s in stats.values()) for k in ("videos", "frames", "boxes")}
    return {"splits": stats, "total": total}
