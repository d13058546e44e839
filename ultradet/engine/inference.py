"""Online, frame-by-frame inference over test videos -> COCO results + FPS timing.

FPS follows the paper's "pure compute time" (spec section 4): only the model call is timed,
batch 1, data loading and resizing excluded, CUDA synchronised before the clock is read. Unlike
the original we also exclude a stated number of warm-up frames (first frames pay for lazy
initialisation and allocator growth, which a real-time system pays once).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from ultradet.data.records import FrameRecord, VideoRecord

FrameStream = Callable[[VideoRecord], Iterator[tuple[FrameRecord, torch.Tensor]]]


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


def to_coco_results(frame: FrameRecord, output: dict, *, category_id: int = 1) -> list[dict]:
    """Convert one frame's detections (``boxes`` XYXY original pixels, ``scores``) to COCO result
    dicts with ``bbox`` = [x, y, w, h] in pixels."""
    boxes = output["boxes"].detach().cpu().double()
    scores = output["scores"].detach().cpu().double()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
    return [
        {"image_id": frame.image_id, "category_id": category_id, "bbox": [round(v, 3) for v in box], "score": float(s)}
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
    timed_frames, seconds, seen = 0, 0.0, 0
    total = sum(v.num_frames for v in videos)
    with tqdm(total=total, desc="inference", unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        for video in videos:
            model.reset()
            owed: deque[FrameRecord] = deque()  # frames whose output has not been emitted yet
            for frame, image in frames_of(video):
                image = image.to(device)
                _sync(device)
                start = time.perf_counter()
                output = model.infer_frame(image, original_size=(frame.height, frame.width))
                _sync(device)
                elapsed = time.perf_counter() - start
                if seen >= warmup_frames:
                    timed_frames, seconds = timed_frames + 1, seconds + elapsed
                seen += 1
                owed.append(frame)
                if output is not None:
                    results.extend(to_coco_results(owed.popleft(), output))
                bar.update(1)
            _sync(device)
            start = time.perf_counter()
            flushed = model.flush()
            _sync(device)
            seconds += time.perf_counter() - start if seen > warmup_frames else 0.0
            if len(flushed) != len(owed):
                raise RuntimeError(f"video {video.video_id}: {len(owed)} frames unanswered, flush() gave {len(flushed)}")
            for frame, output in zip(owed, flushed):
                results.extend(to_coco_results(frame, output))
    fps = timed_frames / seconds if seconds > 0 else float("nan")
    delay = int(getattr(model, "lookahead", 0))
    return results, Timing(timed_frames, min(warmup_frames, seen), seconds, fps, str(device), delay)


def timing_dict(timing: Timing) -> dict:
    """JSON-ready form of :class:`Timing`."""
    return asdict(timing)
