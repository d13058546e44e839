"""Training clips and test frames as tensors (docs/architecture.md, "data -> modeling" and
"data -> engine")."""

from __future__ import annotations

from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ultradet.config import ExperimentConfig, InputConfig, SamplerConfig
from ultradet.data.records import FrameRecord, VideoRecord
from ultradet.data.sampler import build_sampler
from ultradet.data.transforms import build_test_transform, draw_train_transform


def read_rgb(frame: FrameRecord) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB pixels of a frame (grey PNGs are expanded to 3 channels).

    Raises:
        ValueError: the PNG is missing or unreadable, or its size differs from the JSON's.
    """
    image = cv2.imread(str(frame.path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"frame {frame.frame_id} (image_id {frame.image_id}): cannot read {frame.path}")
    if image.shape[:2] != (frame.height, frame.width):
        raise ValueError(
            f"{frame.path}: size {image.shape[1]}x{image.shape[0]} != JSON {frame.width}x{frame.height}"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _to_chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).contiguous()


class ClipDataset(Dataset):
    """Random training clips, one per video per epoch.

    ``dataset[i]`` is a clip of ``videos[i]`` drawn with ``default_rng([seed, i, epoch])``
    (``epoch`` set by :meth:`set_epoch`), so a clip depends only on (seed, video, epoch), whichever
    DataLoader worker builds it. :meth:`make_clip` builds a clip from an explicit generator.

    A clip (docs/architecture.md) is a dict:
        ``images``: FloatTensor ``[T, 3, H', W']`` RGB 0..255 (one transform for all frames),
        ``boxes``: list of T FloatTensor ``[K_t, 4]`` XYXY pixels of the transformed frame,
        ``labels``: list of T LongTensor ``[K_t]`` (zeros: lesion),
        ``video_id``: int, ``frame_ids``: LongTensor ``[T]`` ascending,
    with ``T = sampler_cfg.clip_frames``; the frames are those of the sampler named by
    ``sampler_cfg.name`` (:func:`~ultradet.data.sampler.build_sampler`), with the memory sampler
    its memory frames first.
    """

    def __init__(self, videos: Sequence[VideoRecord], *, input_cfg: InputConfig, sampler_cfg: SamplerConfig, seed: int):
        self.videos = list(videos)
        self.input_cfg = input_cfg
        self.sampler = build_sampler(sampler_cfg)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.videos):
            raise IndexError(f"video index {index} out of range for {len(self.videos)} videos")
        return self.make_clip(index, np.random.default_rng([self.seed, index, self.epoch]))

    def make_clip(self, video_index: int, rng: np.random.Generator) -> dict:
        """The clip of ``videos[video_index]`` whose frame choice and augmentation come from ``rng``."""
        video = self.videos[video_index]
        frame_ids = self.sampler.sample(video.num_frames, rng)
        transform = draw_train_transform(video.height, video.width, self.input_cfg, rng)
        images, boxes, labels = [], [], []
        for i in frame_ids:
            frame = video.frames[i]
            images.append(_to_chw(transform.apply_image(read_rgb(frame))))
            frame_boxes, _ = transform.apply_boxes(frame.boxes, frame.height, frame.width)
            boxes.append(torch.from_numpy(frame_boxes))
            labels.append(torch.zeros(len(frame_boxes), dtype=torch.int64))
        return {
            "images": torch.stack(images),
            "boxes": boxes,
            "labels": labels,
            "video_id": video.video_id,
            "frame_ids": torch.from_numpy(frame_ids),
        }


def collate_clips(batch: list[dict]) -> list[dict]:
    """A batch is a plain list of clips: clips differ in size, and temporal heads take one at a time."""
    return list(batch)


class _EpochDraws(Dataset):
    """Draw ``g`` of the infinite training stream: epoch ``g // n``, video
    ``permutation_epoch[g % n]`` (``n`` videos, a fresh seeded permutation per epoch, like the
    original's per-epoch ``randperm``), clip = ``clips`` with that epoch set, at that video, plus
    ``draw`` = ``g`` (the clip's place in the stream, which seeds the model's own random draws
    for that clip in the trainer)."""

    def __init__(self, clips: ClipDataset):
        self.clips = clips

    def __len__(self) -> int:  # the stream is unbounded; DataLoader only needs a number
        return 2**62

    def __getitem__(self, draw: int) -> dict:
        epoch, slot = divmod(draw, len(self.clips))
        order = np.random.default_rng([self.clips.seed, epoch, 0x0E90C]).permutation(len(self.clips))
        video = int(order[slot])
        clip = self.clips.make_clip(video, np.random.default_rng([self.clips.seed, video, epoch]))
        return {**clip, "draw": draw}


class _ShardDraws(Sampler[int]):
    """The draws of one data-parallel worker, from iteration ``start_iter`` on.

    Iteration ``i`` consumes draws ``[i * B, (i + 1) * B)`` of the stream (``B`` = clips per
    batch, the global batch); worker ``rank`` of ``world_size`` reads the contiguous slice
    ``i * B + rank * S + [0, S)`` of it, ``S = B / world_size``. So the clips of an iteration are
    the same whatever the number of workers, and each worker builds only its own.
    """

    def __init__(self, *, clips_per_batch: int, rank: int, world_size: int, start_iter: int):
        self.batch, self.share = clips_per_batch, clips_per_batch // world_size
        self.offset, self.start_iter = rank * self.share, start_iter

    def __iter__(self) -> Iterator[int]:
        iteration = self.start_iter
        while True:
            first = iteration * self.batch + self.offset
            yield from range(first, first + self.share)
            iteration += 1


def build_train_loader(
    videos: Sequence[VideoRecord],
    cfg: ExperimentConfig,
    *,
    seed: int,
    start_iter: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[list[dict]]:
    """Infinite iterator over one data-parallel worker's micro-batches: lists of
    ``cfg.solver.clips_per_worker`` clips, beginning with the first micro-batch of iteration
    ``start_iter`` (0-based); each iteration is ``clips_per_batch / (world_size * clips_per_worker)``
    micro-batches (the gradient-accumulation steps).

    Each epoch visits every video once in a seeded random order; worker ``rank`` reads only its
    own slice of each iteration's draws (see :class:`_ShardDraws`), and each clip carries its
    ``draw`` index. The clips are identical for any ``cfg.dataloader_workers`` and any split of the
    global batch (each clip's randomness depends only on seed, video and epoch), and the stream
    from ``start_iter`` is exactly the tail of the stream from 0, which is what lets a resumed
    training run see the batches an uninterrupted one would have.

    Raises:
        ValueError: if ``videos`` is empty, or ``rank`` is not in ``[0, world_size)``.
        ConfigError: ``clips_per_batch`` is not a multiple of ``world_size * clips_per_worker``.
    """
    if not videos:
        raise ValueError("cannot build a training loader: no training videos")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")
    cfg.solver.accumulation_steps(world_size)  # validates the split
    clips = ClipDataset(videos, input_cfg=cfg.input, sampler_cfg=cfg.sampler, seed=seed)
    draws = _ShardDraws(clips_per_batch=cfg.solver.clips_per_batch, rank=rank, world_size=world_size, start_iter=start_iter)
    loader = DataLoader(
        _EpochDraws(clips), batch_size=cfg.solver.clips_per_worker, sampler=draws,
        num_workers=cfg.dataloader_workers, collate_fn=collate_clips,
        # Its own generator: creating an iterator otherwise draws a worker base seed from torch's
        # global RNG, which would shift the model's random draws after a resume.
        generator=torch.Generator().manual_seed(seed),
    )
    return iter(loader)


def iter_test_frames(
    video: VideoRecord, *, fixed_area_test: float, scale_test: float
) -> Iterator[tuple[FrameRecord, torch.Tensor]]:
    """Yield ``(frame, image)`` in frame order; ``image`` is FloatTensor ``[3, H', W']`` RGB 0..255
    resized deterministically to area ``fixed_area_test * scale_test**2`` (spec section 2).
    The original size is ``(frame.height, frame.width)``."""
    for frame in video.frames:
        yield frame, resize_for_test(read_rgb(frame), fixed_area_test=fixed_area_test, scale_test=scale_test)


def resize_for_test(rgb: np.ndarray, *, fixed_area_test: float, scale_test: float) -> torch.Tensor:
    """One frame as the test-time model input: uint8 ``(H, W, 3)`` RGB -> FloatTensor
    ``[3, H', W']`` RGB 0..255, resized deterministically to area ``fixed_area_test *
    scale_test**2`` (spec section 2). Every test frame goes through this, whether it comes from
    the dataset (:func:`iter_test_frames`) or from a user's clip (``ultradet.predict``)."""
    height, width = rgb.shape[:2]
    transform = build_test_transform(height, width, fixed_area_test=fixed_area_test, scale_test=scale_test)
    return _to_chw(transform.apply_image(rgb))
