import numpy as np
import pytest
import torch

from ultradet.data.records import FrameRecord, VideoRecord
from ultradet.engine.inference import run_inference, to_coco_results


def _video(video_id, n, first_image_id):
    frames = tuple(
        FrameRecord(first_image_id + i, i, None, 20, 30, np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
        for i in range(n)
    )
    return VideoRecord(video_id, f"benign/v{video_id}", "benign", f"v{video_id}", 0, frames)


class Recorder(torch.nn.Module):
    """Emits one box per frame whose score encodes (#frames since reset)."""

    def __init__(self):
        super().__init__()
        self.resets, self.count = 0, 0

    def reset(self):
        self.resets += 1
        self.count = 0

    def infer_frame(self, image, original_size):
        self.count += 1
        h, w = original_size
        return {
            "boxes": torch.tensor([[1.0, 2.0, w - 1.0, h - 2.0]]),
            "scores": torch.tensor([self.count / 100]),
            "labels": torch.tensor([0]),
        }

    def flush(self):
        return []


class Delayed(Recorder):
    """A lookahead of 2 frames: frame t's output (score t / 100) is emitted with frame t + 2,
    the last two by ``flush``."""

    lookahead = 2

    def reset(self):
        super().reset()
        self.owed = []

    def infer_frame(self, image, original_size):
        self.owed.append(super().infer_frame(image, original_size))
        return self.owed.pop(0) if len(self.owed) > self.lookahead else None

    def flush(self):
        owed, self.owed = self.owed, []
        return owed


def frames_of(video):
    for frame in video.frames:
        yield frame, torch.zeros(3, 8, 8)


def test_run_inference_resets_per_video_and_writes_coco_xywh():
    model = Recorder()
    videos = [_video(1, 3, 10), _video(2, 2, 20)]
    results, timing = run_inference(model, videos, frames_of, device=torch.device("cpu"), warmup_frames=2, progress=False)
    assert model.resets == 2
    assert [r["image_id"] for r in results] == [10, 11, 12, 20, 21]
    assert [r["score"] for r in results] == pytest.approx([0.01, 0.02, 0.03, 0.01, 0.02])
    assert results[0]["bbox"] == [1.0, 2.0, 28.0, 16.0]  # xywh of (1,2)-(29,18)
    assert timing.frames == 3 and timing.warmup_frames == 2
    assert timing.fps == pytest.approx(3 / timing.compute_seconds)


def test_run_inference_maps_delayed_outputs_to_their_frames():
    videos = [_video(1, 4, 10), _video(2, 1, 20)]  # the second video is shorter than the delay
    results, timing = run_inference(Delayed(), videos, frames_of, device=torch.device("cpu"), warmup_frames=0, progress=False)
    assert [r["image_id"] for r in results] == [10, 11, 12, 13, 20]
    assert [r["score"] for r in results] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.01])
    assert timing.frames == 5 and timing.delay_frames == 2


def test_to_coco_results_empty_frame():
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    assert to_coco_results(5, empty) == []
