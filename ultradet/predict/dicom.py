"""A multi-frame DICOM cine loop (e.g. Ultrasound Multi-frame Image Storage) as a clip, read with
pydicom one frame at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, iter_pixels

from ultradet.predict.clip import Clip, ClipError

_PIXEL_DATA = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_GREY = ("MONOCHROME1", "MONOCHROME2")
# pydicom's decoders hand these back as RGB (``iter_pixels`` converts YBR_FULL(_422); JPEG and
# JPEG 2000 decoders convert YBR_ICT / YBR_RCT); PALETTE COLOR goes through the colour LUT.
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR")


class DicomClip(Clip):
    """A DICOM file's frames as uint8 RGB, with its photometric conversions:

    - ``MONOCHROME2``: grey, the stored range (``BitsStored``, signed or not) mapped linearly onto
      0..255 and copied to 3 channels; ``MONOCHROME1`` (white is 0) inverted first;
    - ``RGB`` as is; ``YBR_FULL`` / ``YBR_FULL_422`` / ``YBR_ICT`` / ``YBR_RCT`` converted to
      RGB by pydicom; ``PALETTE COLOR`` through the file's colour LUT; more than 8 bits per
      sample are scaled to 8.

    Modality and VOI LUTs (windowing) are not applied: an ultrasound cine loop stores display
    values. The frame rate is the file's: ``1000 / FrameTime`` (ms), else ``CineRate``, else
    ``RecommendedDisplayFrameRate``; None when it states none.

    Raises:
        ClipError: not a DICOM file, no pixel data, an unsupported photometric interpretation,
            or a transfer syntax pydicom cannot decode here (at the first frame).
    """

    kind = "dicom"

    def __init__(self, path: Path):
        try:
            ds = dcmread(path, defer_size="1 KB")  # pixel data stays on disk until iterated
        except (InvalidDicomError, OSError, ValueError) as exc:
            raise ClipError(f"{path}: not a readable DICOM file ({exc})") from None
        if not any(name in ds for name in _PIXEL_DATA):
            raise ClipError(f"{path}: this DICOM file has no pixel data (no PixelData element): nothing to detect on")
        self.photometric = str(ds.get("PhotometricInterpretation", ""))
        if self.photometric not in _GREY + _COLOUR:
            raise ClipError(f"{path}: photometric interpretation {self.photometric!r} is not supported")
        self.header = ds
        super().__init__(path, fps=frame_rate(ds), num_frames=int(ds.get("NumberOfFrames") or 1))
        frames = iter(self)  # decode the first frame now: fail before any work, with one line
        next(frames, None)
        frames.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for frame in iter_pixels(self.path):
                yield self.to_rgb(frame)
        except (NotImplementedError, RuntimeError, ValueError) as exc:
            syntax = getattr(getattr(self.header, "file_meta", None), "TransferSyntaxUID", "unknown")
            raise ClipError(f"{self.path}: cannot decode its pixel data (transfer syntax {syntax}: {exc})") from None

    def to_rgb(self, frame: np.ndarray) -> np.ndarray:
        """One decoded frame (``(rows, cols)`` grey or ``(rows, cols, 3)``) -> uint8 ``(rows, cols, 3)`` RGB."""
        ds = self.header
        if self.photometric in _GREY:
            bits, signed = int(ds.BitsStored), int(ds.get("PixelRepresentation", 0)) == 1
            low = -(2 ** (bits - 1)) if signed else 0
            grey = (frame.astype(np.float64) - low) * (255.0 / (2**bits - 1))
            if self.photometric == "MONOCHROME1":
                grey = 255.0 - grey
            return np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        bits = int(ds.BitsStored)
        if self.photometric == "PALETTE COLOR":
            frame, bits = apply_color_lut(frame, ds), int(ds.RedPaletteColorLookupTableDescriptor[2])
        if bits == 8:
            return np.ascontiguousarray(frame, dtype=np.uint8)
        return np.clip(np.rint(frame.astype(np.float64) * (255.0 / (2**bits - 1))), 0, 255).astype(np.uint8)


def frame_rate(ds: Dataset) -> float | None:
    """Frames per second a DICOM header states: ``1000 / FrameTime`` (ms per frame, the Cine
    module), else ``CineRate``, else ``RecommendedDisplayFrameRate``; None if none is positive."""
    if float(ds.get("FrameTime") or 0) > 0:
        return 1000.0 / float(ds.FrameTime)
    for name in ("CineRate", "RecommendedDisplayFrameRate"):
        if float(ds.get(name) or 0) > 0:
            return float(ds.get(name))
    return None
