"""A user's clip by its path: a video file, a multi-frame DICOM cine loop or a folder of frames."""

from __future__ import annotations

import os
from pathlib import Path

from ultradet.predict.clip import Clip, ClipError
from ultradet.predict.dicom import DicomClip
from ultradet.predict.frame_folder import FrameFolderClip
from ultradet.predict.video_file import VideoFileClip

DICOM_SUFFIXES = (".dcm", ".dicom")
_DICOM_MAGIC_OFFSET = 128  # "DICM" follows the 128-byte preamble (DICOM part 10)


def open_clip(path: str | Path) -> Clip:
    """The clip at ``path``: a folder is a folder of frames (:class:`FrameFolderClip`), a file
    with the DICOM signature or a ``.dcm``/``.dicom`` name a cine loop (:class:`DicomClip`), any
    other file a video (:class:`VideoFileClip`: MP4, AVI, MOV, MKV, whatever OpenCV's FFmpeg reads).

    Raises:
        ClipError: ``path`` does not exist or cannot be read, or the clip's first frame cannot be decoded.
    """
    path = Path(path)
    if not path.exists():
        raise ClipError(f"{path}: no such file or folder")
    if not os.access(path, os.R_OK):
        raise ClipError(f"{path}: cannot read it (permission denied)")
    if path.is_dir():
        return FrameFolderClip(path)
    if path.suffix.lower() in DICOM_SUFFIXES or _has_dicom_signature(path):
        return DicomClip(path)
    return VideoFileClip(path)


def _has_dicom_signature(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(_DICOM_MAGIC_OFFSET)
        return f.read(4) == b"DICM"
