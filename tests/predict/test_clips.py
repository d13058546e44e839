"""ultradet.predict clip readers: video files, DICOM cine loops and frame folders decode to the
frames that were written (colour kept, order kept, frame rate read), and bad files fail with one
line naming them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from clipfiles import write_dicom, write_video

from ultradet.predict import ClipError, open_clip
from ultradet.predict.dicom import DicomClip


def colour_frames(n: int = 6, size=(48, 64)) -> list[np.ndarray]:
    """RGB frames whose three channels differ (a swap would show) and change over time."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    return [np.roll(base, 3 * t, axis=1) for t in range(n)]


def write_rgb_video(frames, path: Path, fourcc: str) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.mark.parametrize("name,fourcc", [("clip.mp4", "FFV1"), ("clip.mov", "png "), ("clip.avi", "FFV1")])
def test_lossless_video_files_decode_to_the_written_rgb_frames(tmp_path, name, fourcc):
    frames = colour_frames()
    clip = open_clip(write_rgb_video(frames, tmp_path / name, fourcc))
    assert (clip.kind, clip.fps, clip.num_frames) == ("video", 25.0, len(frames))
    decoded = list(clip)
    assert len(decoded) == len(frames)
    for got, want in zip(decoded, frames):
        np.testing.assert_array_equal(got, want)
    assert len(list(clip)) == len(frames)  # a clip can be read again


def test_mjpg_decodes_near_losslessly_and_in_order(tmp_path):
    frames = [cv2.GaussianBlur(f, (5, 5), 0) for f in colour_frames()]  # JPEG's regime: smooth content
    decoded = list(open_clip(write_rgb_video(frames, tmp_path / "clip.avi", "MJPG")))
    errors = np.array([[np.abs(d.astype(int) - f).mean() for f in frames] for d in decoded])
    assert errors.diagonal().max() < 10  # grey levels (chroma subsampling of random colour); another frame: > 20
    assert (errors.argmin(axis=1) == np.arange(len(frames))).all()  # each frame closest to itself


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_grey_dicom_is_read_with_its_photometric_interpretation(tmp_path, photometric):
    grey = [f[..., 1] for f in colour_frames()]
    clip = open_clip(write_dicom(grey, tmp_path / "loop.dcm", photometric, frame_time_ms=33.0))
    assert (clip.kind, clip.num_frames) == ("dicom", len(grey))
    assert clip.fps == pytest.approx(1000 / 33)
    for got, want in zip(clip, grey):
        np.testing.assert_array_equal(got, np.repeat(want[..., None], 3, axis=2))  # MONOCHROME1 inverted back


@pytest.mark.parametrize("photometric,tolerance", [("RGB", 0), ("YBR_FULL", 2)])
def test_colour_dicom_is_converted_to_rgb(tmp_path, photometric, tolerance):
    frames = colour_frames()
    path = write_dicom([f[..., 0] for f in frames], tmp_path / "loop.dcm", photometric)  # header and sizes
    # Replace the grey pixels by the colour frames, stored as the photometric interpretation says.
    clip = DicomClip(_with_colour(path, frames, photometric))
    decoded = list(clip)
    assert len(decoded) == len(frames)
    for got, want in zip(decoded, frames):
        assert np.abs(got.astype(int) - want).max() <= tolerance  # YBR_FULL: rounding of the colour transform


def _with_colour(path: Path, frames, photometric: str) -> Path:
    from pydicom import dcmread
    from pydicom.pixels import convert_color_space

    ds = dcmread(path)
    stored = [f if photometric == "RGB" else convert_color_space(f, "RGB", photometric) for f in frames]
    ds.PixelData = np.stack(stored).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_frame_rate_falls_back_to_cine_rate_then_none(tmp_path):
    grey = [f[..., 0] for f in colour_frames(2)]
    path = write_dicom(grey, tmp_path / "loop.dcm", "MONOCHROME2", frame_time_ms=None)
    assert open_clip(path).fps is None
    from pydicom import dcmread

    ds = dcmread(path)
    ds.CineRate = 24
    ds.save_as(path, enforce_file_format=True)
    assert open_clip(path).fps == 24.0


def test_dicom_without_suffix_is_recognised_by_its_signature(tmp_path):
    grey = [f[..., 0] for f in colour_frames(2)]
    path = write_dicom(grey, tmp_path / "IM0001", "MONOCHROME2")
    assert open_clip(path).kind == "dicom"


def test_frame_folder_is_read_in_natural_order(tmp_path):
    frames = colour_frames(11)
    for i, frame in enumerate(frames):  # 0.png ... 10.png: "10" sorts before "2" as text
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = open_clip(tmp_path)
    assert (clip.kind, clip.fps, clip.num_frames) == ("frames", None, 11)
    for got, want in zip(clip, frames, strict=True):
        np.testing.assert_array_equal(got, want)


def test_frame_folder_with_frames_of_two_sizes_fails_at_the_odd_frame(tmp_path):
    cv2.imwrite(str(tmp_path / "000.png"), np.zeros((32, 32, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "001.png"), np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(ClipError, match=r"001\.png: frame of 40x32 px, but the clip's first frame is 32x32"):
        list(open_clip(tmp_path))


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not a video at all " * 100)
    return path


def _unknown_codec(tmp_path: Path) -> Path:
    """An AVI whose video stream claims the codec 'XQZ7', which no decoder knows."""
    path = write_rgb_video(colour_frames(2), tmp_path / "clip.avi", "FFV1")
    path.write_bytes(path.read_bytes().replace(b"FFV1", b"XQZ7"))
    return path


def _no_pixels(tmp_path: Path) -> Path:
    return write_dicom(None, tmp_path / "loop.dcm", "MONOCHROME2")


def _bad_dicom(tmp_path: Path) -> Path:
    path = tmp_path / "loop.dcm"
    path.write_bytes(b"\x00" * 10)
    return path


def _empty_folder(tmp_path: Path) -> Path:
    (tmp_path / "frames").mkdir()
    return tmp_path / "frames"


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p / "missing.mp4", r"missing\.mp4: no such file or folder"),
        (_garbage, r"clip\.mp4: not a video file OpenCV can read, nor a DICOM file"),
        (_unknown_codec, r"clip\.avi: unsupported codec: an AVI file whose video codec 'XQZ7' OpenCV's FFmpeg cannot decode"),
        (_no_pixels, r"loop\.dcm: this DICOM file has no pixel data"),
        (_bad_dicom, r"loop\.dcm: not a readable DICOM file"),
        (_empty_folder, r"frames: a folder of frames, but it holds no"),
    ],
    ids=["missing", "not-a-video", "unknown-codec", "dicom-without-pixels", "not-dicom", "empty-folder"],
)
def test_unreadable_clips_fail_with_one_line_naming_the_file(tmp_path, make, message):
    with pytest.raises(ClipError, match=message) as info:
        open_clip(make(tmp_path))
    assert "\n" not in str(info.value)
