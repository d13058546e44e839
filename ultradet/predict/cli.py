"""``ultradet predict MODEL CLIP --out DIR`` (also ``python -m ultradet.predict``): argument
parsing only; the work is :func:`ultradet.predict.run.predict_clip`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from ultradet.errors import run_cli
from ultradet.experiment_log.store import resolve_tracking_uri
from ultradet.predict.clips import open_clip
from ultradet.predict.detector import load_detector
from ultradet.predict.run import OUTPUT_FILES, predict_clip


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The command line's arguments (``prog`` names it in usage and errors)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run a trained detector online over a video file, a multi-frame DICOM cine loop or a folder "
        "of frames, as the evaluation runs it; write " + ", ".join(OUTPUT_FILES.values()) + " into --out.",
    )
    p.add_argument("model", help="a run folder (runs/<model>/fold<k>) or an MLflow model URI "
                   "(runs:/<run_id>/model, models:/<name>/<version>)")
    p.add_argument("clip", help="a video file (MP4, AVI, MOV, ...), a multi-frame DICOM file, or a folder of frame images")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--score-thresh", type=float, default=None,
                   help="keep detections with at least this score; default: the fold's thr90 (its score threshold at "
                   "recall 0.9), read from results/<model>/fold<k>/metrics.json beside a run folder, or from the "
                   "MLflow run that logged the model")
    p.add_argument("--fps", type=float, default=None, help="the clip's frame rate; default: the file's, else 30")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ...; default: the model config's device")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow store of model URIs; default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "ultradet predict") -> int:
    """Parse ``argv``, open the clip (first: a bad clip fails before the model loads), load the
    detector, pick the threshold, :func:`predict_clip`, print one summary line; returns 0.

    Raises:
        UserError: ``ClipError``, ``ModelSourceError``, ``ModelLoadError`` (one line each).
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine")
    if args.fps is not None and args.fps <= 0:
        parser.error(f"--fps must be positive, got {args.fps}")
    clip = open_clip(args.clip)  # before the model: a bad clip fails at once
    detector = load_detector(args.model, tracking_uri=resolve_tracking_uri(args.tracking_uri), device=args.device)
    if args.score_thresh is not None:
        thresh, source = args.score_thresh, "--score-thresh"
    else:
        thresh, source = detector.default_threshold()
    summary = predict_clip(
        detector, clip, args.out, score_thresh=thresh, threshold_source=source, fps=args.fps, progress=not args.no_progress
    )
    print(
        f"{summary['display_name']} on {clip.path}: {summary['frames']} frames, {summary['detections']} detections "
        f"with score >= {thresh:.4g} ({source}), {summary['timing']['fps']:.1f} FPS -> {args.out}"
    )
    return 0


def run(argv: Sequence[str] | None = None, prog: str = "ultradet predict") -> int:
    """:func:`main` with user errors as one line on stderr and exit status 1 (``run_cli``)."""
    return run_cli(lambda: main(argv, prog), prog)
