"""Online, frame-by-frame inference over test videos -> COCO results + FPS timing.

FPS follows the paper's "pure compute time" (spec section 4): only the model call is timed,
batch 1, data loading and resizing excluded, CUDA synchronised before the clock is read. Unlike
the original we also exclude a stated number of warm-up frames (first frames pay for lazy
initialisation and allocator growth, which a real-time system pays once).
"""

from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import torch
from tqdm.auto import tqdm

from ultradet.data.records import FrameRecord, VideoRecord

FrameStream = Callable[[VideoRecord], Iterator[tuple[FrameRecord, torch.Tensor]]]
Key = TypeVar("Key")


@dataclass
class Timing:
    """Compute-time record of an inference run. ``fps`` = ``frames / compute_seconds``;
    ``delay_frames``: how many frames late each output is emitted (bounded lookahead; 0 = causal)."""

    frames: int
    warmup_frames: int
    compute_seconds: float
    fps: float
    device: str
    delay_frames: int = 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class ComputeClock:
    """The pure compute time of a run's model calls (module docstring): each ``infer_frame`` and
    ``flush`` call is timed between two CUDA synchronisations; the calls of the first
    ``warmup_frames`` frames of the run are not counted, nor a ``flush`` before them.

    Attributes:
        frames: frames timed; seconds: their compute time, s; seen: frames run;
        last_seconds: the latest call's compute time, s (for a live FPS display).
    """

    def __init__(self, device: torch.device, warmup_frames: int = 0):
        self.device, self.warmup_frames = device, warmup_frames
        self.frames, self.seconds, self.seen, self.last_seconds = 0, 0.0, 0, 0.0

    @contextmanager
    def frame(self) -> Iterator[None]:
        """Time one ``infer_frame`` call."""
        counted = self.seen >= self.warmup_frames
        with self._timed(counted=counted):
            yield
        self.frames += int(counted)
        self.seen += 1

    @contextmanager
    def flush(self) -> Iterator[None]:
        """Time the ``flush`` call at the end of a video."""
        with self._timed(counted=self.seen > self.warmup_frames):
            yield

    @contextmanager
    def _timed(self, *, counted: bool) -> Iterator[None]:
        _sync(self.device)
        start = time.perf_counter()
        yield
        _sync(self.device)
        self.last_seconds = time.perf_counter() - start
        self.seconds += self.last_seconds if counted else 0.0

    def timing(self, delay_frames: int = 0) -> Timing:
        """The run's :class:`Timing` (``fps`` NaN when nothing was timed)."""
        fps = self.frames / self.seconds if self.seconds > 0 else float("nan")
        return Timing(self.frames, min(self.warmup_frames, self.seen), self.seconds, fps, str(self.device), delay_frames)


def stream_video(
    model: torch.nn.Module,
    frames: Iterable[tuple[Key, torch.Tensor, tuple[int, int]]],
    *,
    device: torch.device,
    clock: ComputeClock,
) -> Iterator[tuple[Key, dict]]:
    """Run ``model`` online over one video: ``reset()``, ``infer_frame`` per frame, ``flush()``.

    Args:
        model: the :class:`~ultradet.modeling.Detector` contract, in eval mode on ``device``.
        frames: ``(key, image FloatTensor[3, H', W'], original_size (h, w))`` in frame order;
            ``key`` is the caller's handle of the frame, handed back with its detections. Read
            lazily, one at a time: a long video is never held in memory.
        clock: times the model calls.

    Yields:
        ``(key, detections)`` in frame order, each as soon as the model emits it (a model with
        a lookahead of ``k`` frames answers frame t after frame t + k, the last ``k`` frames
        from ``flush()``): ``boxes`` FloatTensor[N, 4] XYXY pixels of the original frame,
        ``scores`` FloatTensor[N], ``labels`` LongTensor[N].

    Raises:
        RuntimeError: ``flush()`` did not answer exactly the frames still owed.
    """
    model.reset()
    owed: deque[Key] = deque()  # frames whose detections have not been emitted yet
    for key, image, original_size in frames:
        image = image.to(device)
        with clock.frame():
            output = model.infer_frame(image, original_size=original_size)
        owed.append(key)
        if output is not None:
            yield owed.popleft(), output
    with clock.flush():
        flushed = model.flush()
    if len(flushed) != len(owed):
        raise RuntimeError(f"{len(owed)} frames unanswered at the end of a video, flush() gave {len(flushed)}")
    yield from zip(owed, flushed)


def to_coco_results(image_id: int, output: dict, *, category_id: int = 1) -> list[dict]:
    """Convert one frame's detections (``boxes`` XYXY original pixels, ``scores``) to COCO result
    dicts of image ``image_id`` with ``bbox`` = [x, y, w, h] in pixels (3 decimals)."""
    boxes = output["boxes"].detach().cpu().double()
    scores = output["scores"].detach().cpu().double()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
    return [
        {"image_id": image_id, "category_id": category_id, "bbox": [round(v, 3) for v in box], "score": float(s)}
        for box, s in zip(xywh.tolist(), scores.tolist())
    ]


def run_inference(
    model: torch.nn.Module,
    videos: Sequence[VideoRecord],
    frames_of: FrameStream,
    *,
    device: torch.device,
    warmup_frames: int = 5,
    progress: bool = True,
) -> tuple[list[dict], Timing]:
    """Run ``model`` online over every frame of every video.

    Args:
        model: provides ``reset()``, ``infer_frame(image FloatTensor[3,H,W], original_size=(h,w))``
            returning ``boxes`` (XYXY pixels of the original frame), ``scores``, ``labels`` of
            the oldest frame not yet answered, or None (a model with a lookahead of ``k`` frames
            answers frame t after frame t + k), and ``flush()`` returning the outputs still owed
            at the end of a video (oldest first). Its ``lookahead`` attribute, if any, is the delay.
        videos: the videos to run; ``reset()`` is called before each.
        frames_of: yields ``(FrameRecord, image FloatTensor[3,H',W'])`` in frame order for a video.
        device: where the model runs.
        warmup_frames: the first this many frames of the run are not timed (still predicted).

    Returns:
        (COCO results list, :class:`Timing`). Frames with no detections contribute no results.
    """
    model.eval().to(device)
    results: list[dict] = []
    clock = ComputeClock(device, warmup_frames)
    total = sum(v.num_frames for v in videos)
    with tqdm(total=total, desc="inference", unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        for video in videos:
            frames = ((frame, image, (frame.height, frame.width)) for frame, image in frames_of(video))
            for frame, output in stream_video(model, frames, device=device, clock=clock):
                results.extend(to_coco_results(frame.image_id, output))
                bar.update(1)
    return results, clock.timing(int(getattr(model, "lookahead", 0)))


def timing_dict(timing: Timing) -> dict:
    """JSON-ready form of :class:`Timing`."""
    return asdict(timing)
