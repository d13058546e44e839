"""Track-YOLO's tracker (baselines spec 2.4): the Kalman filter against a hand computation, the
association score, each per-frame rule on scripted detections, reset and the fixed removal Bug,
and the tracking one-stage meta-architecture."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch

from modeltoy import SIZE, lesion_clip, tiny_config
from ultradet.config import load_config
from ultradet.modeling import build_model
from ultradet.modeling.tracking import BoxKalmanFilter, CacheTracker, TrackState, build_tracker
from ultradet.modeling.tracking.tracker import association_scores

DEFAULTS = dict(
    valid_score_thresh=0.05, sparse_nms_thresh=0.5, kalman_iou_thresh=0.5, new_score_thresh=0.2, track_buffer_size=20
)


def _tracker(**overrides) -> CacheTracker:
    return CacheTracker(**{**DEFAULTS, **overrides})


def _frame(*detections: tuple[list[float], float]) -> dict[str, torch.Tensor]:
    """One frame's detections from ``(box XYXY, score)`` pairs."""
    boxes = torch.tensor([box for box, _ in detections], dtype=torch.float32).reshape(-1, 4)
    scores = torch.tensor([score for _, score in detections], dtype=torch.float32)
    return {"boxes": boxes, "scores": scores, "labels": torch.zeros(len(scores), dtype=torch.long)}


def _box(x: float, y: float = 40.0, w: float = 20.0, h: float = 20.0) -> list[float]:
    return [x, y, x + w, y + h]


def _ids(output: dict) -> list[int]:
    return output["track_ids"].tolist()


# ------------------------------------------------------------------------------------- Kalman
def _numpy_kalman(first: list[float], measurements: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Reference: each corner coordinate filtered alone as a 2-state (position, velocity)
    constant-velocity filter, P0 = 10 I, R = 1, Q = diag((z0/20)^2, (z0/160)^2); predict then
    update per measurement. Returns the 8-d state and 8 x 8 covariance assembled from the four
    independent 2 x 2 filters."""
    transition = np.array([[1.0, 1.0], [0.0, 1.0]])
    state, covariance = np.zeros(8), np.zeros((8, 8))
    for i, z0 in enumerate(first):
        x, p = np.array([z0, 0.0]), 10.0 * np.eye(2)
        q = np.diag([(z0 / 20) ** 2, (z0 / 160) ** 2])
        for z in measurements:
            x, p = transition @ x, transition @ p @ transition.T + q
            gain = p[:, 0] / (p[0, 0] + 1.0)
            x, p = x + gain * (z[i] - x[0]), p - np.outer(gain, p[0, :])
        state[[i, i + 4]] = x
        covariance[np.ix_([i, i + 4], [i, i + 4])] = p
    return state, covariance


def test_kalman_one_step_matches_hand_computation():
    kalman = BoxKalmanFilter(torch.tensor([10.0, 20.0, 50.0, 80.0]))
    assert torch.equal(kalman.predict(), torch.tensor([10.0, 20.0, 50.0, 80.0], dtype=torch.float64))
    # x1: P = F (10 I) F^T + Q -> position variance 20 + (10/20)^2 = 20.25, covariance 10,
    # velocity variance 10 + (10/160)^2; S = 21.25; z - x = 2.
    torch.testing.assert_close(kalman.covariance[0, 0], torch.tensor(20.25, dtype=torch.float64))
    torch.testing.assert_close(kalman.covariance[4, 4], torch.tensor(10 + (10 / 160) ** 2, dtype=torch.float64))
    kalman.update(torch.tensor([12.0, 21.0, 52.0, 81.0]))
    torch.testing.assert_close(kalman.state[0], torch.tensor(10 + 2 * 20.25 / 21.25, dtype=torch.float64))
    torch.testing.assert_close(kalman.state[4], torch.tensor(2 * 10 / 21.25, dtype=torch.float64))
    torch.testing.assert_close(kalman.covariance[0, 0], torch.tensor(20.25 - 20.25**2 / 21.25, dtype=torch.float64))
    torch.testing.assert_close(kalman.covariance[0, 4], torch.tensor(10 - 20.25 * 10 / 21.25, dtype=torch.float64))
    state, covariance = _numpy_kalman([10.0, 20.0, 50.0, 80.0], [[12.0, 21.0, 52.0, 81.0]])
    torch.testing.assert_close(kalman.state, torch.from_numpy(state))
    torch.testing.assert_close(kalman.covariance, torch.from_numpy(covariance))


def test_kalman_two_steps_match_numpy_reference():
    first, measurements = [10.0, 20.0, 50.0, 80.0], [[12.0, 21.0, 52.0, 81.0], [14.5, 21.5, 55.0, 83.0]]
    kalman = BoxKalmanFilter(torch.tensor(first))
    for z in measurements:
        kalman.predict()
        kalman.update(torch.tensor(z))
    state, covariance = _numpy_kalman(first, measurements)
    torch.testing.assert_close(kalman.state, torch.from_numpy(state))
    torch.testing.assert_close(kalman.covariance, torch.from_numpy(covariance))
    # The next prediction extrapolates by the estimated velocity.
    torch.testing.assert_close(kalman.predict(), torch.from_numpy(state[:4] + state[4:]))


def test_kalman_rejects_a_bad_box():
    with pytest.raises(ValueError, match="4 finite"):
        BoxKalmanFilter(torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="4 finite"):
        BoxKalmanFilter(torch.tensor([0.0, 0.0, 1.0, 1.0])).update(torch.tensor([0.0, float("nan"), 1.0, 1.0]))


# --------------------------------------------------------------------------- association score
def test_association_score_is_complete_iou_by_hand():
    detection, prediction = [0.0, 0.0, 4.0, 2.0], [1.0, 0.0, 5.0, 4.0]
    # Intersection 3 x 2 = 6, union 8 + 16 - 6 = 18; centres (2, 1) and (3, 2): rho^2 = 2;
    # enclosing box (0, 0, 5, 4): c^2 = 41; aspect term v, alpha = v / (1 - IoU + v).
    iou = 6 / 18
    v = 4 / math.pi**2 * (math.atan(4 / 4) - math.atan(4 / 2)) ** 2
    expected = iou - 2 / 41 - v / (1 - iou + v) * v
    score = association_scores(torch.tensor([detection]).double(), torch.tensor([prediction]).double())
    assert score.shape == (1, 1)
    assert score.item() == pytest.approx(expected, abs=1e-6)


def test_association_score_of_a_point_box_is_below_every_complete_iou():
    score = association_scores(torch.tensor([[5.0, 5.0, 5.0, 5.0]]), torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    assert score.item() == -2.0


# --------------------------------------------------------------------------- per-frame rules
def test_rule1_score_filter_then_nms_removes_overlapping_duplicates():
    tracker = _tracker()
    out = tracker.update(
        _frame(
            (_box(0), 0.8),  # duplicate of the next, IoU 18/22 > 0.5, lower score: removed
            (_box(2), 0.9),
            (_box(12), 0.7),  # IoU 10/30 with _box(2): kept
            (_box(100), 0.05),  # not above 0.05
            (_box(200), 0.3),
        )
    )
    assert out["boxes"].tolist() == [_box(2), _box(12), _box(200)]
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7, 0.3])


def test_rule1_a_continuing_detection_must_score_above_the_valid_threshold():
    for score, kept in ((0.05, False), (0.06, True)):
        tracker = _tracker()
        tracker.update(_frame((_box(0), 0.9)))
        out = tracker.update(_frame((_box(2), score)))
        assert (len(out["boxes"]) == 1) == kept, score


def test_rule2_a_track_is_matched_through_its_prediction():
    # A box moving 5 px a frame for 8 frames, then 8 px: the last box overlaps the one before
    # with complete IoU 0.37, the track's constant-velocity prediction (about +4) with 0.62.
    tracker = _tracker()
    for x in [100 + 5 * t for t in range(8)] + [143]:
        out = tracker.update(_frame((_box(x), 0.9)))
        assert _ids(out) == [0] and list(tracker.tracks) == [0]
    assert association_scores(torch.tensor([_box(143)]), torch.tensor([_box(135)])).item() < 0.5


def test_rule2_only_active_tracks_predict():
    tracker = _tracker()
    tracker.update(_frame((_box(0), 0.9)))
    track = tracker.tracks[0]
    covariance = track.kalman.covariance.clone()
    tracker.update(_frame())  # still NEW at the start of the frame: predicts, then is lost
    assert track.state is TrackState.LOST
    kalman = track.kalman
    assert torch.equal(kalman.covariance, kalman.transition @ covariance @ kalman.transition.T + kalman.process_noise)
    lost_state, lost_covariance = track.kalman.state.clone(), track.kalman.covariance.clone()
    for _ in range(3):
        tracker.update(_frame((_box(0), 0.1)))
    assert torch.equal(track.kalman.state, lost_state) and torch.equal(track.kalman.covariance, lost_covariance)


def test_rule3_pairs_need_a_complete_iou_above_the_threshold():
    # A 20 x 20 box shifted by 6 (IoU 14/26 = 0.54, complete IoU 0.505) continues a stationary
    # NEW track; shifted by 6.4 (IoU 0.515 > 0.5, complete IoU 0.478) it does not: a low score
    # shows which.
    for shift, continues in ((6.0, True), (6.4, False)):
        tracker = _tracker()
        tracker.update(_frame((_box(0), 0.9)))
        out = tracker.update(_frame((_box(shift), 0.1)))
        assert (_ids(out) == [0]) == continues, shift
        assert (tracker.tracks[0].state is TrackState.TRACKED) == continues


def test_rule3_hungarian_maximises_the_total_complete_iou():
    tracks = [[6.0, 11.0, 31.0, 37.0], [10.0, 8.0, 31.0, 26.0]]
    detections = [[10.0, 1.0, 27.0, 28.0], [7.0, 11.0, 31.0, 27.0]]
    scores = association_scores(torch.tensor(detections), torch.tensor(tracks))
    best = max(itertools.permutations(range(2)), key=lambda p: sum(scores[d, k] for d, k in enumerate(p)))
    # A greedy best-pair-first matching would keep only (detection 1, track 1).
    assert best == (1, 0) and scores.max() == scores[1, 1] and scores[0, 0] < 0.5 < scores[0, 1]
    tracker = _tracker()
    assert _ids(tracker.update(_frame((tracks[0], 0.9), (tracks[1], 0.8)))) == [0, 1]
    out = tracker.update(_frame((detections[0], 0.9), (detections[1], 0.8)))
    assert _ids(out) == [best[0], best[1]]
    assert out["boxes"].tolist() == detections


def test_rule4_matched_track_is_corrected_by_its_kalman_filter():
    # A box moving 2 px a frame, found at frames 0..5.
    boxes = [_box(10 + 2 * t, y=30 + t) for t in range(6)]
    tracker = _tracker()
    for box in boxes:
        out = tracker.update(_frame((box, 0.9)))
        assert _ids(out) == [0]
    track = tracker.tracks[0]
    state, covariance = _numpy_kalman(boxes[0], boxes[1:])
    assert track.state is TrackState.TRACKED and track.lost_frames == 0
    torch.testing.assert_close(track.kalman.state, torch.from_numpy(state))
    torch.testing.assert_close(track.kalman.covariance, torch.from_numpy(covariance))


def test_rule5_unmatched_tracks_are_lost_and_never_resumed():
    # A flicker: the box is missed at frame 2. At frame 3 it cannot continue its LOST track: a
    # low score is dropped, a high one starts a new track.
    for score, expected in ((0.15, []), (0.9, [1])):
        tracker = _tracker()
        for box in ([_box(0)], [_box(2)], []):
            tracker.update(_frame(*[(b, 0.9) for b in box]))
        track = tracker.tracks[0]
        assert track.state is TrackState.LOST and track.lost_frames == 1
        out = tracker.update(_frame((_box(4), score)))
        assert _ids(out) == expected
        assert track.state is TrackState.LOST and track.lost_frames == 2


def test_rule6_unmatched_detections_start_tracks_only_above_the_new_threshold():
    tracker = _tracker()
    out = tracker.update(_frame((_box(0), 0.21), (_box(100), 0.2)))
    assert out["boxes"].tolist() == [_box(0)] and _ids(out) == [0]
    assert list(tracker.tracks) == [0] and tracker.tracks[0].state is TrackState.NEW
    # A low-score box that continues a track is output; the same score elsewhere is not.
    out = tracker.update(_frame((_box(2), 0.1), (_box(100), 0.1)))
    assert out["boxes"].tolist() == [_box(2)] and _ids(out) == [0]


def test_rule7_output_is_new_tracks_then_matched_with_the_detectors_boxes():
    tracker = _tracker()
    tracker.update(_frame((_box(0), 0.5), (_box(50), 0.5)))
    detections = _frame((_box(52.5), 0.95), (_box(2.5), 0.9), (_box(200), 0.4), (_box(100), 0.3))
    out = tracker.update(detections)
    # NMS order is by score; new tracks (ids 2, 3) come first, then the matched (ids 1, 0).
    assert _ids(out) == [2, 3, 1, 0]
    order = [2, 3, 0, 1]
    assert torch.equal(out["boxes"], detections["boxes"][order])
    assert torch.equal(out["scores"], detections["scores"][order])
    assert torch.equal(out["labels"], detections["labels"][order])
    # The filter's estimate is not what is output.
    assert not torch.equal(tracker.tracks[0].kalman.box.float(), detections["boxes"][1])


def test_empty_frames_and_empty_outputs_keep_the_format():
    tracker = _tracker()
    for frame in (_frame(), _frame((_box(0), 0.1))):
        out = tracker.update(frame)
        assert out["boxes"].shape == (0, 4)
        assert out["scores"].shape == out["labels"].shape == out["track_ids"].shape == (0,)
        assert out["track_ids"].dtype == torch.long


def test_reset_isolates_videos():
    first = [_frame((_box(0), 0.9)), _frame((_box(2), 0.9))]
    second = [_frame((_box(4), 0.1), (_box(80), 0.9)), _frame((_box(82), 0.9))]
    fresh = [_tracker().update(frame) for frame in second]
    tracker = _tracker()
    for frame in first:
        tracker.update(frame)
    # Without a reset the low-score box would continue the first video's track.
    assert _ids(copy.deepcopy(tracker).update(second[0])) == [1, 0]
    tracker.reset()
    for expected, frame in zip(fresh, second):
        out = tracker.update(frame)
        assert out.keys() == expected.keys() and all(torch.equal(out[k], expected[k]) for k in out)


def test_lost_track_is_removed_by_its_own_counter():
    # Spec 2.4 Bug: the original reads the lost count of the last track of its prediction loop.
    # Here track 0 is lost from frame 1 while the later track 1 stays active (lost count 0):
    # track 0 is kept while its own count is at most 3 and dropped when it reaches 4.
    tracker = _tracker(track_buffer_size=3)
    tracker.update(_frame((_box(0), 0.9)))
    for t in range(1, 5):
        tracker.update(_frame((_box(100 + t), 0.9)))
        assert tracker.tracks[1].active and tracker.tracks[1].lost_frames == 0
        if t <= 3:
            assert tracker.tracks[0].state is TrackState.LOST and tracker.tracks[0].lost_frames == t
    assert list(tracker.tracks) == [1]


def test_stored_tracks_are_bounded_by_the_buffer():
    # Random flickering boxes on a grid: every stored track has gone unmatched at most 20 frames, and every
    # track that went unmatched for 20 frames or fewer is still stored.
    g = torch.Generator().manual_seed(0)
    tracker = _tracker()
    last_seen: dict[int, int] = {}
    for t in range(80):
        count = int(torch.randint(0, 4, (1,), generator=g))
        x = 40.0 * torch.randint(0, 8, (count,), generator=g)  # boxes recur: tracks continue
        out = tracker.update(_frame(*[(_box(float(v)), float(s)) for v, s in zip(x, torch.rand(count, generator=g))]))
        for track_id in _ids(out):
            last_seen[track_id] = t
        assert all(track.lost_frames <= 20 for track in tracker.tracks.values())
        assert {i for i, seen in last_seen.items() if t - seen <= 20} == set(tracker.tracks)


def test_bad_input_is_named():
    tracker = _tracker()
    with pytest.raises(ValueError, match="labels"):
        tracker.update({"boxes": torch.zeros(1, 4), "scores": torch.ones(1)})
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        tracker.update({"boxes": torch.zeros(2, 4), "scores": torch.ones(1), "labels": torch.zeros(2).long()})


def test_from_config_reads_model_tracker():
    tracker = build_tracker(load_config(overrides={"model.tracker.track_buffer_size": 7}))
    assert {**DEFAULTS, "track_buffer_size": 7} == {key: getattr(tracker, key) for key in DEFAULTS}


# ----------------------------------------------------------------- the tracking meta-architecture
# An untrained POTO head scores every box near prior_prob / 2; 0.4 puts the toy's scores around
# the tracker's 0.2 new-track threshold, so that detections are both kept and dropped.
@pytest.fixture(scope="module")
def models():
    overrides = dict(model__dense_head__name="poto", model__poto__prior_prob=0.4)
    torch.manual_seed(0)
    tracked = build_model(tiny_config(model__meta_architecture="track_one_stage", **overrides)).eval()
    untracked = build_model(tiny_config(model__meta_architecture="one_stage", **overrides)).eval()
    untracked.load_state_dict(tracked.state_dict())
    return tracked, untracked


def _run(model, frames: list[torch.Tensor]) -> list[dict]:
    model.reset()
    return [model.infer_frame(image, original_size=(SIZE, SIZE)) for image in frames]


def _videos() -> list[list[torch.Tensor]]:
    return [list(lesion_clip(6, seed)["images"]) for seed in (0, 1)]


def _same(a: list[dict], b: list[dict]) -> bool:
    same_frame = (x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a, b))
    return len(a) == len(b) and all(same_frame)


def test_tracking_detector_outputs_the_trackers_subset_of_the_one_stage_detections(models):
    tracked, untracked = models
    assert tracked.state_dict().keys() == untracked.state_dict().keys()  # the tracker has no parameters
    for video in _videos():
        outputs, detections = _run(tracked, video), _run(untracked, video)
        tracker = build_tracker(tiny_config())
        assert _same(outputs, [tracker.update(d) for d in detections])
        for out, det in zip(outputs, detections):
            rows = [(box, score) for box, score in zip(det["boxes"].tolist(), det["scores"].tolist())]
            assert all(row in rows for row in zip(out["boxes"].tolist(), out["scores"].tolist()))
        assert 0 < sum(len(o["boxes"]) for o in outputs) < sum(len(d["boxes"]) for d in detections)
        assert set(_ids(outputs[0])) & set(_ids(outputs[1]))  # tracks continue


def test_tracking_detector_reset_isolates_videos(models):
    tracked, _ = models
    first, second = _videos()
    forward = [_run(tracked, first), _run(tracked, second)]
    backward = [_run(tracked, second), _run(tracked, first)]
    assert _same(forward[0], backward[1]) and _same(forward[1], backward[0])


def test_tracking_detector_is_causal(models):
    tracked, _ = models
    video, changed = _videos()
    t = 3
    original = _run(tracked, video)
    altered = _run(tracked, video[: t + 1] + changed[t + 1 :])
    assert _same(original[: t + 1], altered[: t + 1])
    assert not _same(original[t + 1 :], altered[t + 1 :])
