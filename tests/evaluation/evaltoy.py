"""Builders for tiny hand-made evaluation cases (imported by the tests in this folder).

Boxes are given XYXY (absolute pixels) and converted to COCO xywh here, so the tests read in the
same format as the package's internals.
"""

from __future__ import annotations


def image_id(video: int, frame: int) -> int:
    """The image id the toy ground truth gives frame ``frame`` of video ``video``."""
    return video * 1000 + frame


def xywh(box) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


def make_gt(videos: dict[int, list[list]]) -> dict:
    """COCO-VID dict from ``{video_id: [GT boxes (XYXY) of frame 0, of frame 1, ...]}``."""
    gt = {"videos": [], "images": [], "annotations": [], "categories": [{"id": 1, "name": "lesion"}]}
    for vid, frames in videos.items():
        gt["videos"].append({"id": vid, "name": f"benign/video{vid}"})
        for f, boxes in enumerate(frames):
            gt["images"].append({"id": image_id(vid, f), "video_id": vid, "frame_id": f, "height": 100,
                                 "width": 100, "file_name": f"{f:06d}.png"})
            for box in boxes:
                x, y, w, h = xywh(box)
                gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": image_id(vid, f),
                                          "video_id": vid, "category_id": 1, "bbox": [x, y, w, h],
                                          "instance_id": vid, "area": w * h, "iscrowd": 0})
    return gt


def det(video: int, frame: int, box, score: float) -> dict:
    """One COCO result for frame ``frame`` of video ``video`` (box XYXY)."""
    return {"image_id": image_id(video, frame), "category_id": 1, "bbox": xywh(box), "score": score}
