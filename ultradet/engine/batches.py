"""The training batch stream as a pure function of the iteration.

Draw ``g`` (the g-th clip of the run, ``g = iteration * clips_per_batch + slot``) is fixed by the
seed alone: its video is ``permutation(epoch)[g % num_videos]`` with ``epoch = g // num_videos``
(each epoch visits every video once, like the original's per-epoch ``randperm``) and its clip
randomness (frame choice, augmentation) comes from ``default_rng([seed, g])``. Hence a resumed
run, or a run with any number of DataLoader workers, sees exactly the same clips.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

ClipFn = Callable[[int, np.random.Generator], dict]


class DrawDataset(Dataset):
    """Map-style view over the infinite sequence of draws: ``dataset[g]`` is clip ``g``.

    Args:
        make_clip: ``make_clip(video_index, rng) -> clip dict`` (docs/architecture.md).
        num_videos: how many training videos ``make_clip`` can index.
        seed: the run's seed.
    """

    def __init__(self, make_clip: ClipFn, *, num_videos: int, seed: int):
        if num_videos < 1:
            raise ValueError("the training split has no videos")
        self.make_clip = make_clip
        self.num_videos = num_videos
        self.seed = seed
        self._perm_epoch, self._perm = -1, None

    def video_index(self, draw: int) -> int:
        epoch, slot = divmod(draw, self.num_videos)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(self.num_videos)
            self._perm_epoch = epoch
        return int(self._perm[slot])

    def __getitem__(self, draw: int) -> dict:
        return self.make_clip(self.video_index(draw), np.random.default_rng([self.seed, draw]))

    def __len__(self) -> int:  # DataLoader asks; the stream itself is unbounded
        return 2**62


class _DrawsFrom(Sampler[int]):
    def __init__(self, first: int):
        self.first = first

    def __iter__(self) -> Iterator[int]:
        draw = self.first
        while True:
            yield draw
            draw += 1


def batch_stream(
    dataset: DrawDataset, *, clips_per_batch: int, num_workers: int = 0
) -> Callable[[int], Iterator[list[dict]]]:
    """Returns ``stream(start_iter)``: an iterator over batches (lists of ``clips_per_batch``
    clips) beginning with the batch of iteration ``start_iter`` (0-based), for
    :class:`ultradet.engine.Trainer`."""

    def stream(start_iter: int) -> Iterator[list[dict]]:
        loader = DataLoader(
            dataset,
            batch_size=clips_per_batch,
            sampler=_DrawsFrom(start_iter * clips_per_batch),
            num_workers=num_workers,
            collate_fn=list,
            persistent_workers=False,
        )
        return iter(loader)

    return stream
