"""A folder of frame images as a clip."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ultradet.predict.clip import Clip, ClipError, check_frame_size

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class FrameFolderClip(Clip):
    """A folder of frame images (``.png .jpg .jpeg .bmp .tif .tiff``) in natural order of their
    names (``2.png`` before ``10.png``), read as the dataset's frames are read (OpenCV, grey
    expanded to RGB). A folder states no frame rate.

    Raises:
        ClipError: the folder holds no frame image.
    """

    kind = "frames"

    def __init__(self, path: Path):
        self.files = sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=_natural_key)
        if not self.files:
            raise ClipError(f"{path}: a folder of frames, but it holds no {'/'.join(FRAME_SUFFIXES)} image")
        super().__init__(path, fps=None, num_frames=len(self.files))

    def __iter__(self) -> Iterator[np.ndarray]:
        size = None
        for file in self.files:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise ClipError(f"{file}: cannot read this frame image")
            size = check_frame_size(file, image.shape[:2], size)
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]
