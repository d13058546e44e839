"""ultradet.predict end to end on an embedded-dataset video written as a frame folder, as video
files and as DICOM cine loops: the detections are the evaluation's on the same frames (exactly
where the file is lossless, within tolerance for a lossy codec), causal and with a lookahead;
the outputs agree with each other; a long clip is never held in memory."""

from __future__ import annotations

import csv
import json
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from clipfiles import grey_frames, write_dicom, write_video
from torchvision.ops import box_iou

from ultradet.data import load_videos
from ultradet.engine.launch import predict_videos
from ultradet.predict import Clip, load_detector, open_clip, predict_clip

# UltraDet causal, and with a lookahead of 2 frames (answers flushed at the end of the clip). The
# file formats run with the lookahead only: what they change is the frames, not the model's timing.
RUNS = {"causal": {}, "lookahead2": {"model.temporal.interval_after_test": 2}}
BOTH = pytest.mark.parametrize("detector", sorted(RUNS), indirect=True)


@pytest.fixture(scope="module")
def runs(make_trained_run, video) -> dict:
    """Per run: (the loaded detector, the evaluation's predictions of ``video`` keyed by frame
    index as predict keys them)."""
    index_of = {f.image_id: f.frame_id for f in video.frames}
    loaded = {}
    for name, overrides in RUNS.items():
        detector = load_detector(str(make_trained_run("ultradet", overrides)), tracking_uri="sqlite:///unused.db", device="cpu")
        results, _ = predict_videos(detector.cfg, detector.model, [video], warmup_frames=0, progress=False)
        loaded[name] = detector, [{**r, "image_id": index_of[r["image_id"]]} for r in results]
    return loaded


@pytest.fixture(params=["lookahead2"])
def detector(request, runs):
    return runs[request.param][0]


@pytest.fixture
def evaluated(runs, detector) -> list[dict]:
    return next(found for loaded, found in runs.values() if loaded is detector)


@pytest.fixture(scope="module")
def video(tiny_dataset):
    return load_videos(tiny_dataset, "trainval", num_folds=4)[0]


def predicted(detector, clip_path, out: Path, score_thresh: float = 0.0) -> tuple[list[dict], dict]:
    summary = predict_clip(detector, open_clip(clip_path), out, score_thresh=score_thresh, threshold_source="test", progress=False)
    return json.loads((out / "detections.json").read_text()), summary


@BOTH
def test_frame_folder_gives_the_evaluation_detections_exactly(detector, video, evaluated, tmp_path):
    found, summary = predicted(detector, video.frames[0].path.parent, tmp_path)
    assert len(found) > 0 and found == evaluated
    assert summary["frames"] == video.num_frames and summary["detections"] == len(found)
    assert summary["timing"]["delay_frames"] == detector.model.lookahead
    assert (summary["clip_fps"], summary["clip_fps_source"]) == (30.0, "default (the clip states no frame rate)")


def _lossless(kind: str, frames: list[np.ndarray], folder: Path) -> Path:
    return {
        "mp4-ffv1": lambda: write_video(frames, folder / "clip.mp4", "FFV1"),
        "mov-png": lambda: write_video(frames, folder / "clip.mov", "png "),
        "dicom-monochrome1": lambda: write_dicom(frames, folder / "loop.dcm", "MONOCHROME1"),
        "dicom-ybr-full": lambda: write_dicom(frames, folder / "loop.dcm", "YBR_FULL"),
    }[kind]()


@pytest.mark.parametrize("kind", ["mp4-ffv1", "mov-png", "dicom-monochrome1", "dicom-ybr-full"])
def test_lossless_files_give_the_evaluation_detections_exactly(detector, video, evaluated, tmp_path, kind):
    clip = _lossless(kind, grey_frames(video.frames[0].path.parent), tmp_path)
    found, summary = predicted(detector, clip, tmp_path / "out")
    assert found == evaluated
    assert summary["clip_fps"] == 25.0  # the container's rate, or 1000 / FrameTime (40 ms)


def test_mjpg_video_gives_the_evaluation_detections_within_tolerance(detector, video, evaluated, tmp_path):
    """MJPG (about 4 grey levels off per pixel here): per frame, the evaluation's 5 highest-scoring
    boxes are found again (IoU >= 0.9, score within 0.01), but for a few that a shifted NMS
    exchanges (untrained weights give many near-equal scores)."""
    clip = write_video(grey_frames(video.frames[0].path.parent), tmp_path / "clip.avi", "MJPG")
    found, _ = predicted(detector, clip, tmp_path / "out")
    matched = total = 0
    for index in range(video.num_frames):
        want = sorted((r for r in evaluated if r["image_id"] == index), key=lambda r: -r["score"])[:5]
        got = [r for r in found if r["image_id"] == index]
        iou = box_iou(_xyxy(want), _xyxy(got))
        close = (iou >= 0.9) & (torch.tensor([[abs(w["score"] - g["score"]) for g in got] for w in want]) <= 0.01)
        matched, total = matched + int(close.any(dim=1).sum()), total + len(want)
    assert matched >= 0.9 * total


def _xyxy(results: list[dict]) -> torch.Tensor:
    boxes = torch.tensor([r["bbox"] for r in results], dtype=torch.float64).view(-1, 4)
    return torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)


def test_outputs_agree_on_the_thresholded_detections(detector, video, evaluated, tmp_path):
    thresh = float(np.median([r["score"] for r in evaluated]))
    found, summary = predicted(detector, video.frames[0].path.parent, tmp_path, score_thresh=thresh)
    assert found == [r for r in evaluated if r["score"] >= thresh] and 0 < len(found) < len(evaluated)
    rows = list(csv.DictReader((tmp_path / "frames.csv").open()))
    assert [int(r["frame"]) for r in rows] == list(range(video.num_frames))
    for row in rows:
        scores = [r["score"] for r in found if r["image_id"] == int(row["frame"])]
        assert int(row["detections"]) == len(scores)
        assert (row["max_score"] == "") if not scores else float(row["max_score"]) == pytest.approx(max(scores), abs=1e-6)
    capture = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    written = []
    while (frame := capture.read())[0]:
        written.append(frame[1])
    assert len(written) == video.num_frames and written[0].shape == (video.height, video.width, 3)
    original = cv2.imread(str(video.frames[0].path))
    assert np.abs(written[0].astype(int) - original).mean() > 1  # boxes and text drawn on it
    assert json.loads((tmp_path / "predict.json").read_text()) == summary
    assert summary["score_thresh"] == thresh and summary["frames_with_detections"] == len({r["image_id"] for r in found})


class CountingClip(Clip):
    """``n`` frames decoded one at a time; counts how many of them are alive at each read."""

    kind = "frames"

    def __init__(self, frame: np.ndarray, n: int):
        super().__init__(Path("counting"), fps=None, num_frames=n)
        self.frame, self.n, self.refs, self.peak = frame, n, [], 0

    def __iter__(self):
        for _ in range(self.n):
            decoded = self.frame.copy()
            self.refs.append(weakref.ref(decoded))
            self.peak = max(self.peak, sum(ref() is not None for ref in self.refs))
            yield decoded


@BOTH
def test_a_clip_is_never_held_in_memory(detector, video, tmp_path):
    clip = CountingClip(cv2.cvtColor(cv2.imread(str(video.frames[0].path)), cv2.COLOR_BGR2RGB), n=16)
    summary = predict_clip(detector, clip, tmp_path, score_thresh=0.0, threshold_source="test", progress=False)
    assert summary["frames"] == 16
    # the frames waiting for their detections (lookahead + 1), the one being written, the one read
    assert clip.peak <= detector.model.lookahead + 3
