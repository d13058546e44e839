"""Trackers that filter a one-stage detector's per-frame detections across a video (baselines
spec 2.4, Track-YOLO's ``CacheTracker``): a Kalman filter on the box, complete-IoU + Hungarian
association, and the original's track-state rules."""

from ultradet.config import ExperimentConfig
from ultradet.modeling.tracking.kalman import BoxKalmanFilter
from ultradet.modeling.tracking.tracker import CacheTracker, Track, TrackState

__all__ = ["BoxKalmanFilter", "CacheTracker", "Track", "TrackState", "build_tracker"]


def build_tracker(cfg: ExperimentConfig) -> CacheTracker:
    """The tracker of ``cfg.model.tracker``."""
    return CacheTracker.from_config(cfg)
