"""``ultradet predict``: a trained detector (run folder or MLflow model URI) on a user's clip (video
file, multi-frame DICOM cine loop, folder of frames), online as the evaluation runs it, with
COCO-style results, a per-frame CSV and an annotated video.

One job per module: ``clip`` (what a clip is, its errors), ``clips`` (a clip by its path),
``video_file``, ``dicom``, ``frame_folder`` (the readers), ``detector`` (the model and its
default threshold), ``outputs`` (the writers), ``run`` (:func:`predict_clip`), ``cli``.
"""

from ultradet.predict.clip import Clip, ClipError
from ultradet.predict.clips import open_clip
from ultradet.predict.detector import ModelSourceError, TrainedDetector, load_detector
from ultradet.predict.run import predict_clip

__all__ = ["Clip", "ClipError", "ModelSourceError", "TrainedDetector", "load_detector", "open_clip", "predict_clip"]
