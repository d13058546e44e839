import numpy as np
import pytest

from ultradet.config import SamplerConfig, load_config
from ultradet.data import ClipSampler, MemoryFrameSampler, build_sampler


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


# ------------------------------------------------------------------------- MemoryFrameSampler
class ScriptedRng:
    """Stands in for ``np.random.Generator``: ``integers`` returns the scripted window centre and
    ``choice`` the first ``count`` candidates (cycled when drawing with replacement); records
    every ``choice`` call as ``(candidates, count, replace)``."""

    def __init__(self, centre: int):
        self.centre, self.calls = centre, []

    def integers(self, low, high):
        assert low <= self.centre < high
        return self.centre

    def choice(self, candidates, count, replace):
        self.calls.append((candidates.tolist(), count, replace))
        return np.resize(candidates, count)


MEGA = dict(interval=20, num_out_frames=10, memory_interval=10, memory_frames=6)  # baselines spec 1.5


@pytest.mark.parametrize(("start", "expected"), [(0, (0, 1)), (1, (0, 1)), (3, (0, 3)), (10, (0, 10)), (25, (15, 25))])
def test_memory_range_is_the_memory_interval_before_the_window(start, expected):
    assert MemoryFrameSampler(**MEGA).memory_range(start) == expected


def test_memory_frames_come_from_the_ten_frames_before_the_local_window():
    rng = ScriptedRng(centre=40)  # window [30, 50)
    frames = MemoryFrameSampler(**MEGA).sample(100, rng)
    assert rng.calls == [(list(range(30, 50)), 10, False), (list(range(20, 30)), 6, False)]
    assert frames.tolist() == [20, 21, 22, 23, 24, 25] + list(range(30, 40))  # memory first


def test_a_short_memory_range_is_drawn_with_replacement():
    rng = ScriptedRng(centre=13)  # window [3, 23): memory range [0, 3) holds 3 < 6 frames
    frames = MemoryFrameSampler(**MEGA).sample(100, rng)
    assert rng.calls[1] == ([0, 1, 2], 6, True)
    assert frames[:6].tolist() == [0, 0, 1, 1, 2, 2]


def test_a_window_starting_at_frame_0_makes_every_memory_frame_frame_0():
    sampler = MemoryFrameSampler(**MEGA)
    rng = ScriptedRng(centre=10)  # 100 frames: smallest centre, window [0, 20)
    assert sampler.sample(100, rng)[:6].tolist() == [0] * 6 and rng.calls[1] == ([0], 6, True)
    generator = np.random.default_rng(0)
    for num_frames in (5, 21):  # a 5-frame video (window [0, 5)) and 21 = interval + 1: s = 0 always
        for _ in range(20):
            frames = sampler.sample(num_frames, generator)
            assert frames[:6].tolist() == [0] * 6 and np.all(np.diff(frames) >= 0)


@pytest.mark.parametrize("num_frames", [1, 12, 31, 47, 100])
def test_memory_sampler_invariants(num_frames):
    sampler = MemoryFrameSampler(**MEGA)
    local_only = ClipSampler(interval=20, num_out_frames=10)
    for seed in range(40):
        frames = sampler.sample(num_frames, np.random.default_rng(seed))
        memory, local = frames[:6], frames[6:]
        assert frames.dtype == np.int64 and frames.shape == (16,)
        # the local part is the ordinary sampler's clip, drawn first from the same generator
        assert np.array_equal(local, local_only.sample(num_frames, np.random.default_rng(seed)))
        assert np.all(np.diff(frames) >= 0)  # sorted memory, sorted local, memory before local
        start = local_only.window(num_frames, np.random.default_rng(seed))[0]
        lo, hi = max(start - 10, 0), max(start, 1)
        assert lo <= memory.min() and memory.max() < hi
        if hi - lo >= 6:
            assert len(np.unique(memory)) == 6


def test_memory_sampler_is_deterministic_under_seed():
    sampler = MemoryFrameSampler(**MEGA)
    a, b = (sampler.sample(80, np.random.default_rng(7)) for _ in range(2))
    assert np.array_equal(a, b)
    assert not all(np.array_equal(a, sampler.sample(80, np.random.default_rng(s))) for s in range(8, 12))


def test_memory_sampler_rejects_bad_sizes_and_empty_video():
    with pytest.raises(ValueError, match="memory_frames"):
        MemoryFrameSampler(memory_frames=0)
    with pytest.raises(ValueError, match="0 frames"):
        MemoryFrameSampler().sample(0, np.random.default_rng(0))


def test_build_sampler_follows_the_config_name():
    assert type(build_sampler(SamplerConfig())) is ClipSampler
    sampler = build_sampler(SamplerConfig(name="memory", interval=8, num_out_frames=4, memory_interval=5, memory_frames=3))
    assert isinstance(sampler, MemoryFrameSampler)
    assert (sampler.local.interval, sampler.local.num_out_frames, sampler.memory_interval, sampler.memory_frames) == (8, 4, 5, 3)
    assert SamplerConfig(name="memory", num_out_frames=4, memory_frames=3).clip_frames == 7
    assert SamplerConfig(num_out_frames=4, memory_frames=3).clip_frames == 4


def test_null_memory_frames_are_as_many_as_the_local_frames():
    # CVA-Net pairs memory and local frames one to one (baselines spec 3.3): with null, a layer
    # that shortens the local part (a profile) shortens the memory with it.
    assert SamplerConfig(name="memory", num_out_frames=4, memory_frames=None).memory_frames == 4
    assert SamplerConfig(name="memory", memory_frames=None).memory_frames == SamplerConfig().num_out_frames
    cfg = load_config(overrides={"sampler.name": "memory", "sampler.memory_frames": None, "sampler.num_out_frames": 3})
    assert (cfg.sampler.memory_frames, cfg.sampler.clip_frames) == (3, 6)
    assert build_sampler(cfg.sampler).sample(40, np.random.default_rng(0)).shape == (6,)
