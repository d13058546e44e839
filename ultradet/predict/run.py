""":func:`predict_clip`: a trained detector over a user's clip, online, frame by frame, as the
evaluation runs it, writing its detections as they come."""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ultradet.engine.inference import ComputeClock, timing_dict
from ultradet.engine.launch import predict_frames
from ultradet.predict.clip import Clip
from ultradet.predict.detector import TrainedDetector
from ultradet.predict.outputs import AnnotatedVideoWriter, CocoResultsWriter, FrameTableWriter

DEFAULT_FPS = 30.0  # where a clip states no frame rate: the evaluation's convention (FP per minute at 30 fps)
WARMUP_FRAMES = 5  # model calls not timed for the summary's FPS, as params.yaml eval.warmup_frames
FPS_WINDOW = 30  # model calls the annotated video's FPS is averaged over
OUTPUT_FILES = {"results": "detections.json", "frames": "frames.csv", "video": "annotated.mp4", "summary": "predict.json"}


@dataclass(frozen=True)
class ClipFrame:
    """A frame waiting for its detections: its 0-based ``index`` in the clip and its ``rgb``
    pixels (uint8 ``(H, W, 3)``, kept to draw on; with a lookahead of ``k`` frames at most
    ``k + 1`` frames wait)."""

    index: int
    rgb: np.ndarray


def predict_clip(
    detector: TrainedDetector,
    clip: Clip,
    out_dir: str | Path,
    *,
    score_thresh: float,
    threshold_source: str,
    fps: float | None = None,
    progress: bool = True,
) -> dict:
    """Run ``detector`` over ``clip`` and write, into ``out_dir`` (created):

    - ``detections.json``: COCO-style results (``image_id`` = frame index; boxes ``[x, y, w, h]``
      pixels of the original frame) with score >= ``score_thresh``;
    - ``frames.csv``: one row per frame (:data:`~ultradet.predict.outputs.FRAME_COLUMNS`);
    - ``annotated.mp4``: the clip with boxes, scores, frame index and measured FPS;
    - ``predict.json``: the returned summary (model, clip, frame rate and threshold and where
      each came from, counts, the compute timing as the evaluation's ``timing.json``).

    The detector runs as in the evaluation (``ultradet.engine.launch.predict_frames``: the test
    resize, ``reset()``, causal or a bounded lookahead flushed at the end); frames are read,
    run and written one at a time.

    Args:
        score_thresh: detections below it are left out of every output.
        threshold_source: where ``score_thresh`` came from (for the summary).
        fps: the clip's frame rate for times and the video; default the file's, else 30.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / file for name, file in OUTPUT_FILES.items()}
    rate, rate_source = _frame_rate(clip, fps)
    model = detector.model
    clock = ComputeClock(next(model.parameters()).device, WARMUP_FRAMES)
    recent: deque[float] = deque(maxlen=FPS_WINDOW)
    frames = ((ClipFrame(index, rgb), rgb) for index, rgb in enumerate(clip))
    count = {"frames": 0, "detections": 0, "frames_with_detections": 0}
    size = None
    with (
        CocoResultsWriter(paths["results"]) as results,
        FrameTableWriter(paths["frames"], rate) as table,
        AnnotatedVideoWriter(paths["video"], rate) as video,
        tqdm(total=clip.num_frames, desc=f"predict {clip.path.name}", unit="frame", disable=not progress, dynamic_ncols=True) as bar,
    ):
        for frame, found in predict_frames(detector.cfg, model, frames, clock=clock):
            recent.append(clock.last_seconds)
            kept = above_threshold(found, score_thresh)
            results.add(frame.index, kept)
            table.add(frame.index, kept)
            video.add(frame.rgb, frame.index, kept, len(recent) / sum(recent) if sum(recent) > 0 else math.nan)
            size = frame.rgb.shape[:2]
            count["frames"] += 1
            count["detections"] += len(kept["scores"])
            count["frames_with_detections"] += bool(len(kept["scores"]))
            bar.update(1)
    lookahead = int(getattr(model, "lookahead", 0))
    summary = {
        "model": detector.source,
        "model_name": detector.cfg.name,
        "display_name": detector.cfg.display_name,
        "clip": str(clip.path),
        "clip_kind": clip.kind,
        "frame_size": list(size) if size else None,
        "clip_fps": rate,
        "clip_fps_source": rate_source,
        "score_thresh": score_thresh,
        "score_thresh_source": threshold_source,
        **count,
        "timing": timing_dict(clock.timing(lookahead)),
        "outputs": {name: str(path) for name, path in paths.items()},
    }
    paths["summary"].write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def above_threshold(detections: dict, score_thresh: float) -> dict:
    """The detections with ``scores >= score_thresh``, on the CPU."""
    keep = detections["scores"] >= score_thresh
    return {name: detections[name][keep].cpu() for name in ("boxes", "scores", "labels")}


def _frame_rate(clip: Clip, fps: float | None) -> tuple[float, str]:
    if fps is not None:
        return fps, "--fps"
    if clip.fps is not None:
        return clip.fps, f"the {clip.kind} file"
    return DEFAULT_FPS, "default (the clip states no frame rate)"
