"""In-memory records of a COCO-VID video dataset (spec section 1), the contract between loading
and everything downstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class FrameRecord:
    """One annotated frame.

    Attributes:
        image_id: COCO ``images[].id``; predictions are keyed by it.
        frame_id: 0-based position in the video (contiguous 0..N-1).
        path: absolute path of the PNG.
        height, width: frame size in pixels, from the JSON.
        boxes: float32 array (K, 4), XYXY absolute pixels of this frame; K may be 0.
        track_ids: int64 array (K,), the annotation ``instance_id`` of each box.
    """

    image_id: int
    frame_id: int
    path: Path
    height: int
    width: int
    boxes: np.ndarray = field(repr=False)
    track_ids: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class VideoRecord:
    """One video with its frames in ``frame_id`` order.

    Attributes:
        video_id: COCO ``videos[].id``.
        name: relative path under ``rawframes`` (``"benign/<id>"``).
        label: class folder, ``"benign"`` or ``"malignant"``.
        patient_id: patient id derived from the basename (spec section 1, step 2).
        fold: ``sha256(patient_id) % num_folds``.
        frames: the frames, ``frames[i].frame_id == i``.
    """

    video_id: int
    name: str
    label: str
    patient_id: str
    fold: int
    frames: tuple[FrameRecord, ...] = field(repr=False)

    @property
    def key(self) -> str:
        """The video's basename (the last component of ``name``)."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def height(self) -> int:
        return self.frames[0].height

    @property
    def width(self) -> int:
        return self.frames[0].width
