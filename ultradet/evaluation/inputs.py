"""Turning a COCO-VID ground-truth dict and a COCO results list into flat numpy arrays.

Everything downstream works on these arrays; no metric code touches the JSON. Explicit inputs
replace the original's re-loading of per-video prediction files by glob (spec section 4,
oddity (v): stale files in the folder were evaluated too); here only what the caller passes in
is evaluated.

Canonical detection order (the documented, deterministic tie-break of this package):
    score descending, then earlier frame (frames are ordered by ``video_id``, then
    ``frame_id``), then smaller ``x1``, ``y1``, ``x2``, ``y2``.
The order depends only on the content of the results, never on their position in the list, so
every metric is invariant to shuffling the results. Two detections equal in all these keys are
interchangeable, so their relative order cannot change any metric. (The original used
``np.argsort(-score)``, whose order among equal scores is arbitrary.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ultradet.box_rules import box_problem, non_positive_size, outside_frame
from ultradet.errors import UserError

# How many offending ids an error message lists before it only counts the rest.
_MAX_IDS_IN_MESSAGE = 10


class EvaluationInputError(UserError, ValueError):
    """The ground truth or the results are malformed; the message names the entry (list index,
    image id, video and frame) or the key."""


@dataclass(frozen=True)
class EvalInputs:
    """The evaluated frames, ground truth and detections as arrays.

    Frames are the ``images[]`` of the evaluated videos, ordered by (``video_id``, ``frame_id``);
    a frame's index in that order is its *frame index*. Boxes are XYXY absolute pixels, float64.

    Attributes:
        frame_video: int64 (F,), the ``video_id`` of each frame.
        frame_image_id: int64 (F,), the COCO ``images[].id`` of each frame.
        gt_boxes: float64 (G, 4), ground-truth boxes grouped by frame index (annotation order
            kept within a frame).
        gt_frame: int64 (G,), frame index of each ground-truth box (non-decreasing).
        det_boxes: float64 (N, 4), detections in canonical order (module docstring).
        det_scores: float64 (N,), their scores (non-increasing).
        det_frame: int64 (N,), frame index of each detection.
        num_videos: number of evaluated videos.
    """

    frame_video: np.ndarray
    frame_image_id: np.ndarray
    gt_boxes: np.ndarray
    gt_frame: np.ndarray
    det_boxes: np.ndarray
    det_scores: np.ndarray
    det_frame: np.ndarray
    num_videos: int

    @property
    def num_frames(self) -> int:
        return len(self.frame_video)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """COCO ``[x, y, w, h]`` (N, 4) -> ``[x1, y1, x2, y2]`` (N, 4), absolute pixels."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def _describe_ids(ids: Iterable[int]) -> str:
    ids = sorted(set(int(i) for i in ids))
    shown = ", ".join(str(i) for i in ids[:_MAX_IDS_IN_MESSAGE])
    more = len(ids) - _MAX_IDS_IN_MESSAGE
    return shown + (f" (and {more} more)" if more > 0 else "")


def _selected_videos(gt: dict, video_ids: Iterable[int] | None) -> np.ndarray:
    """Sorted unique video ids to evaluate; raises ValueError for ids not in ``gt["videos"]``."""
    known = np.array(sorted({int(v["id"]) for v in gt["videos"]}), dtype=np.int64)
    if video_ids is None:
        return known
    wanted = np.unique(np.fromiter((int(v) for v in video_ids), dtype=np.int64))
    unknown = np.setdiff1d(wanted, known)
    if unknown.size:
        raise EvaluationInputError(f"video_ids not in the ground truth's videos[]: {_describe_ids(unknown)}")
    return wanted


def _frames(gt: dict, videos: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """(frame_video, frame_image_id, image_id -> frame index or -1 for frames outside ``videos``)."""
    images = gt["images"]
    image_ids = np.fromiter((int(im["id"]) for im in images), dtype=np.int64, count=len(images))
    unique, counts = np.unique(image_ids, return_counts=True)
    if (counts > 1).any():
        dupes = unique[counts > 1]
        raise EvaluationInputError(f"duplicate images[].id in the ground truth: {_describe_ids(dupes)}")
    video = np.fromiter((int(im["video_id"]) for im in images), dtype=np.int64, count=len(images))
    frame_id = np.fromiter((int(im["frame_id"]) for im in images), dtype=np.int64, count=len(images))
    keep = np.isin(video, videos)
    order = np.lexsort((frame_id[keep], video[keep]))
    frame_video, frame_image_id = video[keep][order], image_ids[keep][order]
    index = dict.fromkeys(image_ids.tolist(), -1)
    index.update(zip(frame_image_id.tolist(), range(len(frame_image_id))))
    return frame_video, frame_image_id, index


def _frame_index_of(image_ids: np.ndarray, index: dict[int, int], what: str) -> np.ndarray:
    """Frame index of each image id (-1: a known frame outside the evaluated videos).

    Raises:
        ValueError: naming the image ids that are not in ``gt["images"]``.
    """
    frames = np.fromiter((index.get(i, -2) for i in image_ids.tolist()), dtype=np.int64, count=len(image_ids))
    unknown = image_ids[frames == -2]
    if unknown.size:
        raise EvaluationInputError(f"{what} with image_id not in the ground truth's images[]: {_describe_ids(unknown)}")
    return frames


def _check_ground_truth(gt) -> None:
    """``gt`` must be an object with ``videos`` and ``images`` lists (``annotations`` optional)."""
    if not isinstance(gt, dict):
        raise EvaluationInputError(f"the ground truth must be a COCO-VID object, got {type(gt).__name__}")
    for key in ("videos", "images"):
        if not isinstance(gt.get(key), list):
            raise EvaluationInputError(
                f"the ground truth has no '{key}' list (a COCO-VID JSON holds videos, images and annotations)"
            )


def _entry(gt: dict, what: str, i: int, item) -> str:
    """``results[i] (image_id 7: video benign/abc frame 3)``: a list entry named by its position,
    image id and, when the image is known, video and frame (for error messages)."""
    image_id = item.get("image_id") if isinstance(item, dict) else None
    image = next((im for im in gt["images"] if im.get("id") == image_id), None) if image_id is not None else None
    if image is None:
        return f"{what}[{i}]" + (f" (image_id {image_id})" if image_id is not None else "")
    video = next((v.get("name", v.get("id")) for v in gt["videos"] if v.get("id") == image.get("video_id")), image.get("video_id"))
    return f"{what}[{i}] (image_id {image_id}: video {video} frame {image.get('frame_id')})"


def _require_key(gt: dict, items: list, key: str, what: str) -> None:
    """Raise naming the first entry of ``items`` that is not an object holding ``key``."""
    for i, item in enumerate(items):
        if not isinstance(item, dict) or key not in item:
            raise EvaluationInputError(f"{_entry(gt, what, i, item)}: no '{key}'")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_bbox(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 4 and all(_is_number(v) for v in value)


def _boxes_array(gt: dict, items: list[dict], what: str) -> np.ndarray:
    """The items' COCO ``bbox`` as ``[x, y, w, h]`` (N, 4) float64; (0, 4) for no items.

    Raises:
        EvaluationInputError: naming the first entry whose bbox is missing, not 4 finite numbers,
            or of negative width or height (which would shift every metric silently).
    """
    _require_key(gt, items, "bbox", what)
    try:
        boxes = np.array([item["bbox"] for item in items], dtype=np.float64).reshape(-1, 4)
        valid = len(boxes) == len(items) and np.isfinite(boxes).all()
    except (ValueError, TypeError):
        valid = False
    if not valid:  # find the culprit only on failure: the fast path stays vectorised
        i, item = next((i, item) for i, item in enumerate(items) if not _is_bbox(item["bbox"]))
        raise EvaluationInputError(f"{_entry(gt, what, i, item)}: bbox {item['bbox']!r} is not 4 finite numbers [x, y, w, h]")
    negative = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
    if negative.size:
        i = int(negative[0])
        raise EvaluationInputError(
            f"{_entry(gt, what, i, items[i])}: bbox {items[i]['bbox']!r} has negative width or height "
            f"({negative.size} such {what} entries); COCO boxes are [x, y, w, h] with w, h >= 0"
        )
    return boxes


def _frame_sizes(gt: dict, image_ids: np.ndarray) -> np.ndarray:
    """(width, height) float64 (N, 2) of the images ``image_ids`` (all in ``gt["images"]``).

    Raises:
        EvaluationInputError: naming the first of those images without a numeric width and height.
    """
    sizes = {}
    for im in gt["images"]:
        size = (im.get("width"), im.get("height"))
        sizes[int(im["id"])] = size if all(_is_number(v) for v in size) else None
    missing = next((i for i in image_ids.tolist() if sizes[i] is None), None)
    if missing is not None:
        raise EvaluationInputError(
            f"images[] entry of image_id {missing} has no numeric 'width' and 'height': "
            "its ground-truth boxes cannot be checked against the frame"
        )
    return np.array([sizes[i] for i in image_ids.tolist()], dtype=np.float64).reshape(-1, 2)


def _check_inside_frames(gt: dict, anns: list, image_ids: np.ndarray, boxes: np.ndarray) -> None:
    """Ground-truth boxes (``[x, y, w, h]`` (N, 4), one per annotation) must obey the prepare
    stage's rule (:mod:`ultradet.box_rules`): positive size, inside the frame within its tolerance.

    Raises:
        EvaluationInputError: naming the first annotation that breaks it and how many do.
    """
    width, height = _frame_sizes(gt, image_ids).T
    x, y, w, h = boxes.T
    bad = np.flatnonzero(non_positive_size(w, h) | outside_frame(x, y, w, h, width, height))
    if bad.size:
        i = int(bad[0])
        image = next(im for im in gt["images"] if int(im["id"]) == image_ids[i])
        problem = box_problem(anns[i]["bbox"], image["width"], image["height"])
        raise EvaluationInputError(
            f"{_entry(gt, 'annotations', i, anns[i])}: {problem} ({bad.size} such annotations); "
            "the prepare stage refuses such a dataset"
        )


def _ground_truth(gt: dict, index: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    anns = gt.get("annotations", [])
    _require_key(gt, anns, "image_id", "annotations")
    image_ids = np.fromiter((int(a["image_id"]) for a in anns), dtype=np.int64, count=len(anns))
    frames = _frame_index_of(image_ids, index, "annotations")
    boxes = _boxes_array(gt, anns, "annotations")
    _check_inside_frames(gt, anns, image_ids, boxes)
    boxes = xywh_to_xyxy(boxes)
    keep = frames >= 0
    order = np.argsort(frames[keep], kind="stable")  # group by frame, annotation order within
    return boxes[keep][order], frames[keep][order]


def _detections(gt: dict, results: list[dict], index: dict[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _require_key(gt, results, "image_id", "results")
    image_ids = np.fromiter((int(r["image_id"]) for r in results), dtype=np.int64, count=len(results))
    frames = _frame_index_of(image_ids, index, "results")
    boxes = xywh_to_xyxy(_boxes_array(gt, results, "results"))
    _require_key(gt, results, "score", "results")
    try:
        scores = np.fromiter((float(r["score"]) for r in results), dtype=np.float64, count=len(results))
        valid = np.isfinite(scores).all()
    except (ValueError, TypeError):
        valid = False
    if not valid:
        i, r = next((i, r) for i, r in enumerate(results) if not _is_number(r["score"]))
        raise EvaluationInputError(f"{_entry(gt, 'results', i, r)}: score {r['score']!r} is not a finite number")
    keep = frames >= 0  # detections of frames outside the evaluated videos are not evaluated
    boxes, scores, frames = boxes[keep], scores[keep], frames[keep]
    # np.lexsort sorts by the LAST key first: score desc, frame, x1, y1, x2, y2.
    order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], frames, -scores))
    return boxes[order], scores[order], frames[order]


def build_inputs(gt: dict, results: list[dict], video_ids: Iterable[int] | None = None) -> EvalInputs:
    """Arrays of the evaluated videos' frames, GT boxes and detections (canonical order).

    Args:
        gt: COCO-VID dict (spec section 1): ``videos[].id``, ``images[]`` with ``id``,
            ``video_id``, ``frame_id``; ``annotations[]`` with ``image_id``, ``bbox`` =
            ``[x, y, w, h]`` absolute pixels. ``category_id`` is ignored (single class).
        results: COCO results, ``{"image_id", "bbox": [x, y, w, h], "score"}``; ``category_id``
            is ignored (single class).
        video_ids: evaluate only these videos (e.g. one fold); ``None``: all ``gt["videos"]``.
            Detections on frames of other videos are dropped.

    Raises:
        EvaluationInputError: (a ``ValueError``) ``gt`` lacks ``videos`` or ``images``; a result
            or annotation refers to an ``image_id`` not in ``gt["images"]`` (the message names
            the ids), a requested video id is not in ``gt["videos"]``, duplicate image ids, or an
            entry lacks a key or has a malformed, non-finite or negative-size bbox or a
            non-finite score (the message names the entry's index, image id, video and frame),
            or a ground-truth box breaks the prepare stage's rule (:mod:`ultradet.box_rules`:
            non-positive size, or outside its image's ``width`` x ``height``, which the images
            of annotated frames must then give).
    """
    _check_ground_truth(gt)
    videos = _selected_videos(gt, video_ids)
    frame_video, frame_image_id, index = _frames(gt, videos)
    gt_boxes, gt_frame = _ground_truth(gt, index)
    det_boxes, det_scores, det_frame = _detections(gt, list(results), index)
    return EvalInputs(
        frame_video=frame_video,
        frame_image_id=frame_image_id,
        gt_boxes=gt_boxes,
        gt_frame=gt_frame,
        det_boxes=det_boxes,
        det_scores=det_scores,
        det_frame=det_frame,
        num_videos=int(videos.size),
    )
