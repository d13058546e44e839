"""The video DETRs' shared plumbing (``meta_arch/video_detr.py``): with a per-frame subclass it
is Deformable DETR exactly; its window answers late with a lookahead, and reset empties it."""

from __future__ import annotations

from pathlib import Path

import torch
from modeltoy import SIZE, TINY_DETR, lesion_clip, run_online, same_detections, tiny_config

from ultradet.modeling import build_model
from ultradet.modeling.meta_arch.detr import DeformableDETR
from ultradet.modeling.meta_arch.video_detr import VideoSetPredictionDetector

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


class PerFrame(VideoSetPredictionDetector):
    """Every frame alone, but through the video plumbing; its window records what it is given."""

    def predict_clip(self, features):
        return self.predict(features), list(range(len(features)))

    def frame_item(self, features):
        return features

    def predict_window(self, items, index):
        self.windows.append((len(items), index))
        return self.predict(items[index])


def _pair(**overrides):
    cfg = tiny_config(EXPERIMENTS / "deformdetr.yaml", **TINY_DETR, model__detr__dropout=0.0, **overrides)
    torch.manual_seed(0)
    image = build_model(cfg)
    video = PerFrame(**DeformableDETR.deformable_parts(cfg), **PerFrame.window_from_config(cfg))
    video.load_state_dict(image.state_dict())
    video.windows = []
    return image, video


def test_per_frame_subclass_is_deformable_detr_exactly():
    image, video = _pair()
    clip = lesion_clip(3)
    torch.manual_seed(1)
    expected = image.train()([clip])
    torch.manual_seed(1)
    got = video.train()([clip])
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    frames = list(lesion_clip(4, seed=2)["images"])
    for a, b in zip(run_online(image.eval(), frames), run_online(video.eval(), frames)):
        assert same_detections(a, b)


def test_window_answers_late_with_a_lookahead_and_reset_empties_it():
    _, video = _pair(model__temporal__interval_pre_test=2, model__temporal__interval_after_test=1)
    video.eval()
    assert video.lookahead == 1 and video.temporal_aggregation
    frames = list(lesion_clip(5)["images"])
    answers = [video.infer_frame(f, original_size=(SIZE, SIZE)) for f in frames[:3]]
    assert answers[0] is None and answers[1] is not None
    # frame 0 with frame 1; frame 1 with 0 and 2 (index 1 of 3)
    assert video.windows == [(2, 0), (3, 1)]
    video.reset()
    video.windows.clear()
    assert video.infer_frame(frames[3], original_size=(SIZE, SIZE)) is None  # a new video waits again
    assert len(video.flush()) == 1 and video.windows == [(1, 0)]


def test_ablation_window_is_the_frame_alone():
    _, video = _pair(model__temporal__interval_after_test=2, model__temporal__aggregate_test=False)
    video.eval()
    assert video.lookahead == 0
    for f in lesion_clip(3)["images"]:
        assert video.infer_frame(f, original_size=(SIZE, SIZE)) is not None
    assert video.windows == [(1, 0)] * 3
