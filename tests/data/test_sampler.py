import numpy as np
import pytest

from ultradet.data import ClipSampler


@pytest.mark.parametrize("num_frames", [1, 5, 16, 29, 30, 31, 45, 100])
def test_sampler_invariants(num_frames):
    sampler = ClipSampler(interval=30, num_out_frames=16)
    rng = np.random.default_rng(0)
    for _ in range(50):
        frames = sampler.sample(num_frames, rng)
        assert frames.dtype == np.int64 and frames.shape == (16,)
        assert np.all(np.diff(frames) >= 0)
        assert frames[0] >= 0 and frames[-1] < num_frames
        assert frames[-1] - frames[0] < 30  # one 30-frame window
        if min(num_frames, 30) >= 16:  # window holds enough frames: no repeats
            assert len(np.unique(frames)) == 16


def test_window_of_31_frames_is_always_the_first_30():
    # centre ~ U{15..15} -> s = 0, e = 30: the last frame (30) is never sampled (kept oddity)
    sampler = ClipSampler(interval=30, num_out_frames=16)
    rng = np.random.default_rng(1)
    assert {sampler.window(31, rng) for _ in range(20)} == {(0, 30)}


def test_last_frame_never_sampled_for_long_videos():
    sampler = ClipSampler(interval=30, num_out_frames=16)
    rng = np.random.default_rng(2)
    windows = [sampler.window(40, rng) for _ in range(500)]
    assert max(e for _, e in windows) == 39  # centre <= 24 -> e <= 39 = N - 1
    assert min(s for s, _ in windows) == 0


def test_short_video_window_is_whole_video_with_replacement():
    sampler = ClipSampler(interval=30, num_out_frames=16)
    frames = sampler.sample(4, np.random.default_rng(3))
    assert set(frames.tolist()) <= {0, 1, 2, 3} and len(frames) == 16


def test_sampler_is_deterministic_under_seed():
    sampler = ClipSampler(interval=10, num_out_frames=4)
    a = sampler.sample(50, np.random.default_rng(7))
    b = sampler.sample(50, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_sampler_rejects_empty_video():
    with pytest.raises(ValueError, match="0 frames"):
        ClipSampler().sample(0, np.random.default_rng(0))
