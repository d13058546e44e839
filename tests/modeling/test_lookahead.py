"""Bounded lookahead (``interval_after_test = k``): frame t is answered after frame t + k with
frames up to t + k, the end of a video flushes the last k answers, and causal-only models refuse it."""

from __future__ import annotations

import pytest
import torch
from modeltoy import SIZE, lesion_clip, tiny_config
from roitoy import HEAD_KWARGS, video_frames

from ultradet.modeling import build_model
from ultradet.modeling.roi_heads import RelationROIHeads

K = 2
HEADS = ("relation", "selsa")


def _model(head: str, k: int = K):
    torch.manual_seed(0)
    return build_model(tiny_config(model__roi_heads__name=head, model__roi_heads__interval_after_test=k)).eval()


def _run(model, frames):
    model.reset()
    emitted = [model.infer_frame(image, original_size=(SIZE, SIZE)) for image in frames]
    return emitted, emitted + model.flush()


@pytest.mark.parametrize("head", HEADS)
def test_one_output_per_frame_emitted_k_frames_late(head):
    model = _model(head)
    emitted, _ = _run(model, list(lesion_clip(7)["images"]))
    assert [e is None for e in emitted] == [True] * K + [False] * (7 - K)
    assert len(model.flush()) == 0  # _run already flushed
    emitted, everything = _run(model, list(lesion_clip(7)["images"]))
    outputs = [o for o in everything if o is not None]
    assert len(outputs) == 7 and model.lookahead == K
    short, everything = _run(model, list(lesion_clip(1)["images"]))  # a video shorter than k
    assert short == [None] and len(everything) == 2 and everything[1] is not None


@pytest.mark.parametrize("head", HEADS)
def test_frame_t_depends_on_frames_up_to_t_plus_k_only(head):
    model = _model(head)
    video, other = list(lesion_clip(8, seed=0)["images"]), list(lesion_clip(8, seed=1)["images"])
    t = 3
    reference = [o for o in _run(model, video)[1] if o is not None]
    after_window = [o for o in _run(model, video[: t + K + 1] + other[t + K + 1 :])[1] if o is not None]
    inside_window = [o for o in _run(model, video[: t + K] + other[t + K :])[1] if o is not None]
    same = [all(torch.equal(a[key], b[key]) for key in a) for a, b in zip(reference, after_window)]
    assert all(same[: t + 1]) and not all(same[t + 1 :])
    # Frame t + K is inside frame t's window: changing it changes frame t's output.
    assert not torch.equal(reference[t]["scores"], inside_window[t]["scores"])


def test_delayed_output_equals_a_from_scratch_relation_over_its_window():
    torch.manual_seed(0)
    head = RelationROIHeads(**HEAD_KWARGS, interval_pre_test=2, interval_after_test=K).eval()
    video = video_frames(6, 4)
    head.reset()
    with torch.no_grad():
        outputs = [head.forward_frame(*frame) for frame in video]
        outputs = [o for o in outputs if o is not None] + head.flush()
        for t in (1, 3, 5):  # start of the video, steady state, last flushed frame
            window = range(max(0, t - 2), min(len(video), t + K + 1))
            features = torch.cat([video[i][0] for i in window])
            boxes = [video[i][1]["boxes"] for i in window]
            x = head.relation(head.box_encoder(features, boxes), torch.cat(boxes))
            first = 4 * (t - window[0])
            expected = head.predict(x[first : first + 4], boxes[t - window[0]], (SIZE, SIZE))
            torch.testing.assert_close(outputs[t]["scores"], expected["scores"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"model__roi_heads__name": "ntca"},
        {"model__roi_heads__name": "mega"},
        {"model__meta_architecture": "fgfa", "model__roi_heads__name": "single_frame"},
    ],
)
def test_causal_only_models_refuse_a_lookahead(overrides):
    with pytest.raises(ValueError, match="interval_after_test must be 0"):
        build_model(tiny_config(model__roi_heads__interval_after_test=1, **overrides))
