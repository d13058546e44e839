"""Training clip samplers (spec section 2, "Frame sampler"; baselines spec 0, "Training data"),
chosen by ``sampler.name`` (:func:`build_sampler`)."""

from __future__ import annotations

import numpy as np

from ultradet.config import SamplerConfig


def draw_sorted(start: int, end: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``int64[count]`` frame indices drawn uniformly from ``[start, end)``, sorted ascending:
    without replacement, or with replacement when the range holds fewer than ``count`` frames."""
    replace = end - start < count
    return np.sort(rng.choice(np.arange(start, end), count, replace=replace)).astype(np.int64)


class ClipSampler:
    """Chooses the frames of a training clip: ``num_out_frames`` sorted frame indices drawn from
    one random window of ``interval`` consecutive frames (the original's ``FrameSampler``).

    For a video of ``N`` frames:

    * centre ``c ~ Uniform{interval//2, ..., N - (interval - interval//2) - 1}`` if ``N > interval``,
      else ``c ~ Uniform{0, ..., N - 1}``;
    * window ``[s, e)`` with ``s = max(c - interval//2, 0)``, ``e = min(N, s + interval)``;
    * ``num_out_frames`` indices drawn uniformly from the window **without** replacement (with
      replacement only when the window is shorter than ``num_out_frames``), sorted ascending.

    Oddity kept on purpose: for ``N > interval`` the largest centre gives ``e = N - 1``, so the last
    frame of a video is never sampled. We keep it so that training clips follow the published
    distribution (paper numbers stay comparable); the cost is one frame per video.
    """

    def __init__(self, *, interval: int = 30, num_out_frames: int = 16):
        if interval < 1 or num_out_frames < 1:
            raise ValueError(f"interval ({interval}) and num_out_frames ({num_out_frames}) must be >= 1")
        self.interval = interval
        self.num_out_frames = num_out_frames

    @classmethod
    def from_config(cls, cfg: SamplerConfig) -> "ClipSampler":
        return cls(interval=cfg.interval, num_out_frames=cfg.num_out_frames)

    def window(self, num_frames: int, rng: np.random.Generator) -> tuple[int, int]:
        """The random window ``(s, e)``, frame indices, ``0 <= s < e <= num_frames``.

        Raises:
            ValueError: if ``num_frames < 1``.
        """
        if num_frames < 1:
            raise ValueError(f"cannot sample a clip from a video of {num_frames} frames")
        half = self.interval // 2
        if num_frames > self.interval:
            centre = int(rng.integers(half, num_frames - (self.interval - half)))
        else:
            centre = int(rng.integers(0, num_frames))
        start = max(centre - half, 0)
        return start, min(num_frames, start + self.interval)

    def sample(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """``int64[num_out_frames]`` sorted frame indices of one clip (see the class docstring)."""
        return draw_sorted(*self.window(num_frames, rng), self.num_out_frames, rng)


class MemoryFrameSampler:
    """A clip of memory frames followed by local frames (baselines spec 0, "Training data": the
    original's ``MemoryFrameSampler``, used by MEGA and CVA-Net).

    * Local frames: exactly :class:`ClipSampler` (``interval``, ``num_out_frames``), window
      ``[s, e)``.
    * Memory frames: ``memory_frames`` indices drawn uniformly from ``[lo, hi)`` with
      ``lo = max(s - memory_interval, 0)`` and ``hi = max(s, lo + 1)`` (:meth:`memory_range`),
      without replacement unless the range is shorter than ``memory_frames``, sorted. A window
      starting at frame 0 leaves the range ``[0, 1)``: every memory frame is frame 0.
    * Clip: memory frames first, then local frames. Memory frames lie before ``s`` (all equal
      to frame 0 when ``s = 0``) and local frames at or after it, so the clip stays sorted.

    Random draws in order: the local window, the local frames, the memory frames.

    Args:
        interval, num_out_frames: the local part (:class:`ClipSampler`).
        memory_interval: frames before the local window that memory frames come from (>= 1).
        memory_frames: memory frames per clip (>= 1).

    Raises:
        ValueError: a size below 1.
    """

    def __init__(
        self, *, interval: int = 30, num_out_frames: int = 16, memory_interval: int = 10, memory_frames: int = 6
    ):
        if memory_interval < 1 or memory_frames < 1:
            raise ValueError(f"memory_interval ({memory_interval}) and memory_frames ({memory_frames}) must be >= 1")
        self.local = ClipSampler(interval=interval, num_out_frames=num_out_frames)
        self.memory_interval = memory_interval
        self.memory_frames = memory_frames

    @classmethod
    def from_config(cls, cfg: SamplerConfig) -> "MemoryFrameSampler":
        return cls(
            interval=cfg.interval,
            num_out_frames=cfg.num_out_frames,
            memory_interval=cfg.memory_interval,
            memory_frames=cfg.memory_frames,
        )

    def memory_range(self, start: int) -> tuple[int, int]:
        """``(lo, hi)``: the frames ``[lo, hi)`` that memory frames come from, for a local window
        starting at frame ``start`` (``hi > lo`` always)."""
        lo = max(start - self.memory_interval, 0)
        return lo, max(start, lo + 1)

    def sample(self, num_frames: int, rng: np.random.Generator) -> np.ndarray:
        """``int64[memory_frames + num_out_frames]``: sorted memory frame indices, then sorted local
        ones (see the class docstring).

        Raises:
            ValueError: if ``num_frames < 1``.
        """
        start, end = self.local.window(num_frames, rng)
        local = draw_sorted(start, end, self.local.num_out_frames, rng)
        memory = draw_sorted(*self.memory_range(start), self.memory_frames, rng)
        return np.concatenate([memory, local])


SAMPLERS = {"clip": ClipSampler, "memory": MemoryFrameSampler}


def build_sampler(cfg: SamplerConfig) -> ClipSampler | MemoryFrameSampler:
    """The sampler named by ``cfg.name`` (``clip`` or ``memory``), built from ``cfg``."""
    return SAMPLERS[cfg.name].from_config(cfg)
