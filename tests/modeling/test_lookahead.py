"""Bounded lookahead (``interval_after_test = k``) of every temporal model (BasicDet relation,
SELSA, UltraDet's NTCA, MEGA, FGFA): frame t is answered after frame t + k with frames up to
t + k, the end of a video flushes the last k answers, and reset() isolates videos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from modeltoy import SIZE, lesion_clip, tiny_config
from roitoy import HEAD_KWARGS, video_frames

from ultradet.modeling import build_model
from ultradet.modeling.lookahead import LookaheadWindow
from ultradet.modeling.roi_heads import MEGAROIHeads, NTCAROIHeads, RelationROIHeads

K = 2
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
# name -> config file; BasicDet's relation head and UltraDet's NTCA head by their head name.
MODELS = {
    "relation": None,
    "selsa": "selsa.yaml",
    "ntca": "ultradet.yaml",
    "mega": "mega.yaml",
    "fgfa": "fgfa.yaml",
}


def _model(name: str, k: int = K):
    torch.manual_seed(0)
    if MODELS[name] is None:
        cfg = tiny_config(model__roi_heads__name=name, model__temporal__interval_after_test=k)
    else:
        cfg = tiny_config(EXPERIMENTS / MODELS[name], model__temporal__interval_after_test=k)
    return build_model(cfg).eval()


def _run(model, frames):
    model.reset()
    emitted = [model.infer_frame(image, original_size=(SIZE, SIZE)) for image in frames]
    return emitted, emitted + model.flush()


@pytest.mark.parametrize("name", MODELS)
def test_one_output_per_frame_emitted_k_frames_late(name):
    model = _model(name)
    emitted, _ = _run(model, list(lesion_clip(7)["images"]))
    assert [e is None for e in emitted] == [True] * K + [False] * (7 - K)
    assert len(model.flush()) == 0  # _run already flushed
    emitted, everything = _run(model, list(lesion_clip(7)["images"]))
    outputs = [o for o in everything if o is not None]
    assert len(outputs) == 7 and model.lookahead == K
    short, everything = _run(model, list(lesion_clip(1)["images"]))  # a video shorter than k
    assert short == [None] and len(everything) == 2 and everything[1] is not None


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[key], b[key]) for key in ("boxes", "scores", "labels"))


@pytest.mark.parametrize("name", MODELS)
def test_frame_t_depends_on_frames_up_to_t_plus_k_only(name):
    # t = 5: MEGA's memory (frames before the 4-frame local window t-3..t) holds frames 0 and 1,
    # NTCA's keyframes (every 2nd frame, the last 2) are 4 and 6 when frame t + K = 7 arrives.
    model = _model(name)
    video, other = list(lesion_clip(10, seed=0)["images"]), list(lesion_clip(10, seed=1)["images"])
    t = 5
    reference = [o for o in _run(model, video)[1] if o is not None]
    after_window = [o for o in _run(model, video[: t + K + 1] + other[t + K + 1 :])[1] if o is not None]
    inside_window = [o for o in _run(model, video[: t + K] + other[t + K :])[1] if o is not None]
    assert len(reference) == len(after_window) == len(inside_window) == 10
    same = [_same(a, b) for a, b in zip(reference, after_window)]
    assert all(same[: t + 1]) and not all(same[t + 1 :])
    # Frame t + K is inside frame t's window: changing it changes frame t's output.
    assert not torch.equal(reference[t]["scores"], inside_window[t]["scores"])


@pytest.mark.parametrize("name", MODELS)
def test_reset_isolates_videos_with_a_lookahead(name):
    model = _model(name)
    first, second = list(lesion_clip(5, seed=2)["images"]), list(lesion_clip(5, seed=3)["images"])
    fresh = _run(model, second)[1]
    model.reset()
    for image in first:  # no flush: frames of the first video are still owed when the next starts
        model.infer_frame(image, original_size=(SIZE, SIZE))
    again = _run(model, second)[1]
    assert len(again) == len(fresh) and [o is None for o in again] == [o is None for o in fresh]
    assert all(_same(a, b) for a, b in zip(again, fresh) if a is not None)


def test_lookahead_window_answers_each_frame_with_its_neighbours():
    window = LookaheadWindow(before=2, after=K)
    answered = []
    for frame in range(6):
        window.append(frame)
        ready = window.pop_ready()
        answered.append(None if ready is None else (ready[0][ready[1]], ready[0]))
    answered += [(frames[index], frames) for frames, index in window.drain()]
    assert answered == [None, None] + [
        (0, [0, 1, 2]),
        (1, [0, 1, 2, 3]),
        (2, [0, 1, 2, 3, 4]),
        (3, [1, 2, 3, 4, 5]),
        (4, [2, 3, 4, 5]),
        (5, [3, 4, 5]),
    ]
    assert window.drain() == [] and window.pending == 0
    causal = LookaheadWindow(before=1, after=0)
    for frame in range(3):
        causal.append(frame)
        assert causal.pop_ready() == ([frame - 1, frame] if frame else [frame], 1 if frame else 0)


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


def test_fgfa_references_are_the_window_around_the_frame():
    model = _model("fgfa")  # interval_pre_test 3, K = 2
    seen = []
    model.aggregate = lambda image, features, ref_images, ref_features: (seen.append(len(ref_images)), features)[1]
    _run(model, list(lesion_clip(6)["images"]))
    # Frame t: min(t, 3) earlier frames and min(K, 5 - t) later ones.
    assert seen == [2, 3, 4, 5, 4, 3]


def test_ntca_delayed_output_uses_the_keyframes_seen_up_to_t_plus_k():
    torch.manual_seed(0)
    head = NTCAROIHeads(**HEAD_KWARGS, context_frames=2, context_step=2, interval_pre_test=2, interval_after_test=K)
    head.eval()
    video = video_frames(7, 4)
    head.reset()
    with torch.no_grad():
        outputs = [head.forward_frame(*frame) for frame in video]
        outputs = [o for o in outputs if o is not None] + head.flush()
        assert len(outputs) == 7
        # Frame 3 is answered when frame 5 arrives: window 1..5, keyframes 2 and 4 (frame 4 is
        # later than frame 3: lookahead context). Frame 6 (flushed): window 4..6, keyframes 4 and 6.
        for t, window, keys in ((3, [1, 2, 3, 4, 5], [2, 4]), (6, [4, 5, 6], [4, 6])):
            boxes = [video[i][1]["boxes"] for i in window]
            features = torch.cat([video[i][0] for i in window])
            images = torch.cat([video[i][2] for i in window])
            key_images = torch.cat([video[i][2] for i in keys])
            context = head.context_vectors(images, boxes, key_images, torch.cat([video[i][0] for i in keys]))
            x = head.aggregate(head.box_encoder(features, boxes), torch.cat(boxes), context)
            first = 4 * window.index(t)
            expected = head.predict(x[first : first + 4], boxes[window.index(t)], (SIZE, SIZE))
            torch.testing.assert_close(outputs[t]["scores"], expected["scores"], rtol=0, atol=1e-5)
            torch.testing.assert_close(outputs[t]["boxes"], expected["boxes"], rtol=0, atol=1e-4)


def test_mega_memory_with_a_lookahead_is_the_frames_before_the_local_window():
    torch.manual_seed(0)
    head = MEGAROIHeads(**HEAD_KWARGS, interval_pre_test=2, interval_after_test=K, memory_frames=2).eval()
    video = video_frames(8, 4, seed=0)
    head.reset()
    memories = []  # memory frames of each classified frame, in the order frames are classified
    classify = head.aggregate_window

    def spy(frames, index):
        memories.append([next(i for i, f in enumerate(video) if f[1]["boxes"] is e.boxes) for e in head.memory()])
        return classify(frames, index)

    head.aggregate_window = spy
    with torch.no_grad():
        outputs = [head.forward_frame(*frame) for frame in video] + head.flush()
    assert [o is None for o in outputs] == [True] * K + [False] * 8
    # Frame t's local window is t-2..t+2; its memory the 2 frames before it, t-4 and t-3.
    assert memories == [[i for i in (t - 4, t - 3) if i >= 0] for t in range(8)]
