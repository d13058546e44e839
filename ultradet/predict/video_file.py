"""A video file (MP4, AVI, MOV, MKV, ...) as a clip, decoded by OpenCV's FFmpeg."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ultradet.predict.clip import Clip, ClipError

_SNIFF_BYTES = 1 << 20  # container headers (and an MP4's moov box) sit in the first or last MiB


class VideoFileClip(Clip):
    """A video file decoded frame by frame (``cv2.VideoCapture``), BGR converted to RGB; the
    frame rate and frame count are the container's.

    Raises:
        ClipError: OpenCV cannot open the file (the message tells a recognised container whose
            video codec OpenCV's FFmpeg cannot decode from a file that is no video), or cannot
            decode its first frame.
    """

    kind = "video"

    def __init__(self, path: Path):
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise ClipError(_unopenable(path))
            if not capture.read()[0]:
                raise ClipError(f"{path}: {_describe(path)}, but not even its first frame could be decoded")
            fps, count = capture.get(cv2.CAP_PROP_FPS), capture.get(cv2.CAP_PROP_FRAME_COUNT)
        finally:
            capture.release()
        super().__init__(
            path,
            fps=fps if math.isfinite(fps) and fps > 0 else None,
            num_frames=int(count) if math.isfinite(count) and count > 0 else None,
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()


def _unopenable(path: Path) -> str:
    container, codec = sniff_container(path)
    if container is None:
        return f"{path}: not a video file OpenCV can read, nor a DICOM file (give a video, a .dcm cine loop or a folder of frames)"
    named = f"video codec '{codec}'" if codec else "video codec"
    return f"{path}: unsupported codec: an {container} file whose {named} OpenCV's FFmpeg cannot decode"


def _describe(path: Path) -> str:
    container, codec = sniff_container(path)
    return f"an {container} file" + (f" ({codec})" if codec else "") if container else "a file OpenCV opens"


def sniff_container(path: Path) -> tuple[str | None, str | None]:
    """The container a file's bytes announce and, where its header names it, the video stream's
    four-character code: ``("AVI", "FFV1")``, ``("MP4/MOV", "avc1")``, ``("Matroska", None)``, or
    ``(None, None)`` for anything else (only the first and last MiB are read)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(_SNIFF_BYTES)
        f.seek(max(size - _SNIFF_BYTES, len(head)))
        tail = f.read()
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        at = head.find(b"strh")  # stream header: 'strh' size 'vids' <codec>
        codec = head[at + 12 : at + 16] if at >= 0 and head[at + 8 : at + 12] == b"vids" else None
        return "AVI", _fourcc(codec)
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        data = head + tail
        at = data.find(b"stsd")  # sample description: 'stsd' version/flags count size <codec>
        return "MP4/MOV", _fourcc(data[at + 16 : at + 20] if at >= 0 else None)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska", None
    return None, None


def _fourcc(code: bytes | None) -> str | None:
    if code is None or len(code) != 4 or not all(32 <= c < 127 for c in code):
        return None
    return code.decode("ascii").strip() or None
