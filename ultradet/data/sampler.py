"""Training clip sampler (spec section 2, "Frame sampler")."""

from __future__ import annotations

import numpy as np

from ultradet.config import SamplerConfig


class ClipSampler:
    """Chooses the frames of a training clip: ``num_out_frames`` sorted frame indices drawn from
    one random window of ``interval`` consecutive frames.

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
        start, end = self.window(num_frames, rng)
        replace = end - start < self.num_out_frames
        return np.sort(rng.choice(np.arange(start, end), self.num_out_frames, replace=replace)).astype(np.int64)
