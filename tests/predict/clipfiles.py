"""Writers of the clip files ``ultradet predict`` reads, for the tests (imported by name: pytest puts
this folder on sys.path): video files through OpenCV, multi-frame DICOM files through pydicom."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid


def grey_frames(folder: Path) -> list[np.ndarray]:
    """The uint8 ``(H, W)`` grey frames of a dataset video folder, in order."""
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(folder.glob("*.png"))]


def write_video(frames: list[np.ndarray], path: Path, fourcc: str, fps: float = 25.0) -> Path:
    """Grey ``frames`` as a colour video with codec ``fourcc``; fails if OpenCV cannot write it."""
    height, width = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} into {path.suffix}"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def write_dicom(
    frames: list[np.ndarray] | None, path: Path, photometric: str, *, frame_time_ms: float | None = 40.0, rows_cols=(64, 64)
) -> Path:
    """An Ultrasound Multi-frame Image file of grey ``frames`` (uint8 ``(H, W)``) stored as
    ``photometric``: ``MONOCHROME2`` as is, ``MONOCHROME1`` inverted, ``RGB`` in 3 equal
    channels, ``YBR_FULL`` converted from that RGB by pydicom. ``frames=None``: no pixel data."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "US"
    ds.Rows, ds.Columns = frames[0].shape if frames else rows_cols
    ds.NumberOfFrames = len(frames) if frames else 1
    if frame_time_ms is not None:
        ds.FrameTime = frame_time_ms
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1 if photometric.startswith("MONOCHROME") else 3
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    if frames is not None:
        ds.PixelData = np.stack([_stored(f, photometric) for f in frames]).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _stored(grey: np.ndarray, photometric: str) -> np.ndarray:
    if photometric == "MONOCHROME2":
        return grey
    if photometric == "MONOCHROME1":
        return 255 - grey
    rgb = np.repeat(grey[..., None], 3, axis=2)
    return rgb if photometric == "RGB" else convert_color_space(rgb, "RGB", photometric)
