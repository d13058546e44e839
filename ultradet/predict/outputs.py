"""What ``ultradet predict`` writes, one frame at a time (constant memory on any clip length):
COCO-style results JSON, a per-frame CSV and an annotated video."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
import torch

from ultradet.engine.inference import to_coco_results

BOX_BGR = (0, 215, 255)  # amber: visible on grey ultrasound
TEXT_BGR = (255, 255, 255)
FRAME_COLUMNS = ("frame", "time_s", "detections", "max_score", "x1", "y1", "x2", "y2")


class _Output:
    """A file written frame by frame; a context manager that closes it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class CocoResultsWriter(_Output):
    """``[{"image_id", "category_id": 1, "bbox": [x, y, w, h], "score"}, ...]`` as the evaluation's
    ``predictions.json`` (``ultradet.engine.to_coco_results``), ``image_id`` = the frame's
    0-based index in the clip; streamed, one detection per line."""

    def __init__(self, path: Path):
        self.file = path.open("w")
        self.file.write("[")
        self.count = 0

    def add(self, frame: int, detections: dict) -> None:
        for result in to_coco_results(frame, detections):
            self.file.write(("," if self.count else "") + "\n" + json.dumps(result))
            self.count += 1

    def close(self) -> None:
        self.file.write("\n]\n")
        self.file.close()


class FrameTableWriter(_Output):
    """One CSV row per frame (:data:`FRAME_COLUMNS`): index, time in the clip (s, at the clip's
    frame rate), the number of detections kept, the highest score and its box (XYXY pixels of
    the original frame; empty when none)."""

    def __init__(self, path: Path, fps: float):
        self.file = path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(FRAME_COLUMNS)
        self.fps = fps

    def add(self, frame: int, detections: dict) -> None:
        scores = detections["scores"]
        top = [""] * 5
        if len(scores):
            best = int(torch.argmax(scores))
            top = [f"{float(scores[best]):.6f}"] + [f"{v:.2f}" for v in detections["boxes"][best].tolist()]
        self.writer.writerow([frame, f"{frame / self.fps:.4f}", len(scores), *top])

    def close(self) -> None:
        self.file.close()


class AnnotatedVideoWriter(_Output):
    """The clip with its detections drawn: each box with its score, and the frame index and
    measured FPS in the corner; MPEG-4 Part 2 (``mp4v``) in MP4 at the clip's frame rate,
    created at the first frame (its size).

    Raises:
        RuntimeError: OpenCV cannot write the file.
    """

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.video = path, fps, None

    def add(self, rgb: np.ndarray, frame: int, detections: dict, measured_fps: float) -> None:
        """Draw on a copy of ``rgb`` (uint8 ``(H, W, 3)``) and append it."""
        if self.video is None:
            height, width = rgb.shape[:2]
            self.video = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self.video.isOpened():
                raise RuntimeError(f"OpenCV cannot write {self.path} (mp4v)")
        self.video.write(draw_detections(rgb, frame, detections, measured_fps))

    def close(self) -> None:
        if self.video is not None:
            self.video.release()


def draw_detections(rgb: np.ndarray, frame: int, detections: dict, measured_fps: float) -> np.ndarray:
    """A BGR copy of ``rgb`` with each box (XYXY pixels) and its score, and ``frame <i>  <fps>
    FPS`` in the top-left corner (``--`` while no FPS is measured)."""
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    scale = max(0.35, min(image.shape[:2]) / 600)  # text that stays legible from 64 px to 1080p
    thick = max(1, round(scale * 2))
    for box, score in zip(detections["boxes"].tolist(), detections["scores"].tolist()):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), BOX_BGR, thick)
        cv2.putText(image, f"{score:.2f}", (x1, max(y1 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, scale, BOX_BGR, thick)
    fps = f"{measured_fps:.1f}" if math.isfinite(measured_fps) else "--"
    cv2.putText(image, f"frame {frame}  {fps} FPS", (4, int(18 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_BGR, thick)
    return image
