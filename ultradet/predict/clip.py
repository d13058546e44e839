"""What every clip is: frames read one at a time (:class:`Clip`), and its errors.

Every clip yields uint8 ``(H, W, 3)`` RGB frames of one size in frame order, never holding more
than the frame being read, so a clip of any length runs in constant memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

import numpy as np

from ultradet.errors import UserError


class ClipError(UserError, ValueError):
    """A clip that cannot be read: missing, unreadable, an unsupported codec or transfer syntax,
    a DICOM file without pixel data, frames of different sizes. The message names the file."""


class Clip(ABC):
    """A clip to detect on.

    Attributes:
        path: the file or folder.
        kind: ``"video"``, ``"dicom"`` or ``"frames"``.
        fps: frames per second stated by the file (None: the file states none).
        num_frames: frames expected (for progress; a video container's count is an estimate), or None.
    """

    kind: str

    def __init__(self, path: Path, *, fps: float | None, num_frames: int | None):
        self.path, self.fps, self.num_frames = path, fps, num_frames

    @abstractmethod
    def __iter__(self) -> Iterator[np.ndarray]:
        """The frames, uint8 ``(H, W, 3)`` RGB, in order, read one at a time.

        Raises:
            ClipError: a frame cannot be decoded, or differs in size from the first.
        """


def check_frame_size(where: Path | str, size: tuple[int, int], first: tuple[int, int] | None) -> tuple[int, int]:
    """The clip's frame size (the first frame's ``(H, W)``); every frame must have it (one
    annotated video, one model input shape per clip).

    Raises:
        ClipError: ``size`` differs from ``first``.
    """
    if first is not None and tuple(size) != tuple(first):
        raise ClipError(
            f"{where}: frame of {size[1]}x{size[0]} px, but the clip's first frame is {first[1]}x{first[0]}: "
            "a clip's frames must share one size"
        )
    return tuple(size)
