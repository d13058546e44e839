"""A fold's trained detector as an MLflow model (the ``python_function`` flavour): logged into the
fold's child run by the train stage, loaded back by URI (``runs:/<run_id>/model``, or
``models:/<name>/<version>`` once registered).

The model folder::

    MLmodel                      flavour, signature (the input contract), metadata (model, fold,
                                 test-time resize, lookahead, the source run)
    artifacts/model_final.pth    the run folder's weights
    artifacts/config.yaml        its resolved config
    model_code.py                makes the :class:`DetectorModel` ("model from code": nothing is
                                 unpickled; the ``ultradet`` package must be installed where the
                                 model is loaded)
    requirements.txt             the pinned packages it needs besides ``ultradet``

MLflow 3 keeps a model as a "logged model" linked to its source run; ``runs:/<run_id>/model``
finds the logged model named ``model`` of that run. As in the rest of this package, everything
goes through an explicit :class:`mlflow.MlflowClient` (``mlflow.pyfunc.log_model`` would log
through the fluent API's global tracking URI and active run): the model is saved with
``mlflow.pyfunc.save_model`` and its files uploaded to a logged model created for the run.

Imported by name (``ultradet.experiment_log.model``), not by the package: it needs torch, which
the report stage's use of ``ultradet.experiment_log`` does not.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

from ultradet.config import ExperimentConfig, load_config
from ultradet.engine.inference import ComputeClock
from ultradet.engine.launch import load_trained_model, predict_frames
from ultradet.engine.runtime import resolve_device
from ultradet.errors import UserError
from ultradet.modeling import build_model

MODEL_NAME = "model"  # runs:/<run_id>/model
WEIGHTS_FILE, CONFIG_FILE = "model_final.pth", "config.yaml"
DETECTION_COLUMNS = ("frame", "x1", "y1", "x2", "y2", "score", "label")
# What the model needs besides ``ultradet`` itself (its own pins, as installed when it was logged).
_REQUIREMENTS = ("torch", "torchvision", "numpy", "scipy", "pandas", "opencv-python-headless", "pydantic", "pyyaml", "mlflow")

SIGNATURE = ModelSignature(
    # One clip: T frames of H x W, RGB, uint8 (any size; resized as the evaluation resizes).
    inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))]),
    outputs=Schema(
        [ColSpec("long", "frame")]
        + [ColSpec("double", c) for c in ("x1", "y1", "x2", "y2", "score")]
        + [ColSpec("long", "label")]
    ),
    params=ParamSchema([ParamSpec("score_thresh", "double", 0.0)]),
)
# Shown in the UI beside the signature: a clip of 2 black 16 x 16 frames.
INPUT_EXAMPLE = np.zeros((2, 16, 16, 3), np.uint8)
# The "model from code" file MLflow runs at load to get a DetectorModel (nothing is unpickled).
_MODEL_CODE = Path(__file__).with_name("model_code.py")


class DetectorModel(mlflow.pyfunc.PythonModel):
    """The pyfunc face of a trained detector.

    ``predict(frames)`` runs the detector online over one clip exactly as the evaluation does
    (``ultradet.engine.launch.predict_frames``: the test-time resize, ``reset()`` first, the
    lookahead flushed at the end).

    After :meth:`load_context`, ``cfg`` is the run's resolved :class:`ExperimentConfig` and
    ``detector`` the model in eval mode, for callers that stream frames themselves
    (``ultradet.predict``); ``model_config={"device": "cpu"}`` at load overrides ``cfg.device``.
    """

    def load_context(self, context) -> None:
        """Build the detector from the model's ``config.yaml`` and ``model_final.pth``."""
        self.cfg: ExperimentConfig = load_config(context.artifacts["config"])
        device = (context.model_config or {}).get("device")
        self.detector = load_trained_model(
            self.cfg, context.artifacts["weights"], device=resolve_device(device) if device else None
        )

    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Detections of one clip.

        Args:
            model_input: uint8 ``[T, H, W, 3]`` RGB frames in frame order.
            params: ``score_thresh`` (default 0: every detection).

        Returns:
            One row per detection: ``frame`` (0-based index), ``x1 y1 x2 y2`` (XYXY pixels of
            the original frame), ``score``, ``label`` (0 = lesion), in frame order.

        Raises:
            ValueError: ``model_input`` is not a uint8 ``[T, H, W, 3]`` array.
        """
        frames = np.asarray(model_input)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        thresh = float((params or {}).get("score_thresh", 0.0))
        return detections_table(self.cfg, self.detector, frames, score_thresh=thresh)


def detections_table(
    cfg: ExperimentConfig, detector: torch.nn.Module, frames: Iterable[np.ndarray], *, score_thresh: float = 0.0
) -> pd.DataFrame:
    """:meth:`DetectorModel.predict` on a loaded detector: one row per detection with score >=
    ``score_thresh`` (columns :data:`DETECTION_COLUMNS`)."""
    device = next(detector.parameters()).device
    rows = []
    for index, found in predict_frames(cfg, detector, enumerate(frames), clock=ComputeClock(device)):
        keep = found["scores"] >= score_thresh
        for box, score, label in zip(found["boxes"][keep].tolist(), found["scores"][keep].tolist(), found["labels"][keep].tolist()):
            rows.append((index, *box, score, label))
    table = pd.DataFrame(rows, columns=list(DETECTION_COLUMNS))
    return table.astype({"frame": "int64", "label": "int64"})


def input_contract(cfg: ExperimentConfig) -> dict[str, Any]:
    """The MLmodel metadata that says what the model expects and answers (beside the signature)."""
    return {
        "model": cfg.name,
        "display_name": cfg.display_name,
        "input": {
            "frames": "one clip, uint8 RGB [T, H, W, 3], in frame order, any frame size",
            "resize": "each frame to area fixed_area_test * scale_test^2 (PIL-style bilinear, "
            "antialiased), as the evaluation (ultradet.data.resize_for_test)",
            "fixed_area_test": cfg.input.fixed_area_test,
            "scale_test": cfg.input.scale_test,
        },
        "output": "one row per detection: frame, x1 y1 x2 y2 (XYXY pixels of the original frame), score, label (0 = lesion)",
        "lookahead_frames": build_model(cfg, initial_weights=False).lookahead,
        "causal": "online, frame by frame; frame t's detections use frames <= t + lookahead_frames",
        "config": f"artifacts/{CONFIG_FILE}",
    }


def pip_requirements() -> list[str]:
    """``package==version`` of what the model needs besides ``ultradet`` (as installed now)."""
    pins = []
    for name in _REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def log_detector(client: MlflowClient, run_id: str, run_dir: str | Path, *, fold: int | None = None) -> str:
    """Log the trained detector of ``run_dir`` (``model_final.pth``, ``config.yaml``) as the MLflow
    model ``model`` of run ``run_id``, so that ``runs:/<run_id>/model`` loads it; the logged model
    carries the fold's tags and is marked READY.

    Returns:
        The logged model's id (``models:/<model_id>`` loads it too).

    Raises:
        FileNotFoundError: ``run_dir`` lacks the weights or the config.
    """
    run_dir = Path(run_dir)
    files = {"weights": run_dir / WEIGHTS_FILE, "config": run_dir / CONFIG_FILE}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"cannot log the detector of {run_dir}: missing {', '.join(missing)}")
    cfg = load_config(files["config"])
    tags = {"ultradet.model": cfg.name, **({"ultradet.fold": str(fold)} if fold is not None else {})}
    experiment_id = client.get_run(run_id).info.experiment_id
    logged = client.create_logged_model(
        experiment_id, name=MODEL_NAME, source_run_id=run_id, tags=tags, model_type="ultradet-video-detector"
    )
    description = Model(artifact_path=logged.artifact_location, run_id=run_id, model_id=logged.model_id, model_uuid=logged.model_id)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / MODEL_NAME
        mlflow.pyfunc.save_model(
            local, python_model=str(_MODEL_CODE), artifacts={k: str(p) for k, p in files.items()},
            signature=SIGNATURE, input_example=INPUT_EXAMPLE, pip_requirements=pip_requirements(),
            metadata=input_contract(cfg) | {"fold": fold}, mlflow_model=description,
        )
        client.log_model_artifacts(logged.model_id, str(local))
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return logged.model_id


class ModelLoadError(UserError, ValueError):
    """An MLflow model URI that the store cannot resolve, or that is not an UltraDet detector."""


@dataclass(frozen=True)
class LoggedDetector:
    """A detector loaded from an MLflow model URI: its ``cfg``, the ``model`` (eval mode) and the
    ``run_id`` of the run that logged it (None if the model names none)."""

    cfg: ExperimentConfig
    model: torch.nn.Module
    run_id: str | None


def load_logged_detector(uri: str, *, tracking_uri: str, device: str | None = None) -> LoggedDetector:
    """Download and load the MLflow model at ``uri`` (``runs:/<run_id>/model``,
    ``models:/<name>/<version>``, ``models:/<model_id>``, or any artifact URI MLflow resolves) from
    the store at ``tracking_uri`` (also the registry), on ``device`` (default: the config's).

    Raises:
        ModelLoadError: the store cannot resolve ``uri``, or it holds another kind of model.
    """
    try:
        with _global_store(tracking_uri):
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri, registry_uri=tracking_uri)
    except MlflowException as exc:
        raise ModelLoadError(f"{uri}: not found in the MLflow store {tracking_uri} ({exc.message})") from exc
    pyfunc = mlflow.pyfunc.load_model(local, model_config={"device": device} if device else None)
    try:
        wrapper = pyfunc.unwrap_python_model()
    except MlflowException:  # a flavour without a Python model object
        wrapper = None
    if not isinstance(wrapper, DetectorModel):
        raise ModelLoadError(f"{uri} is an MLflow model, but not an UltraDet detector")
    return LoggedDetector(wrapper.cfg, wrapper.detector, pyfunc.metadata.run_id)


@contextmanager
def _global_store(uri: str) -> Iterator[None]:
    """Make ``uri`` MLflow's global tracking and registry URI for the block, then restore both.
    MLflow 3.17 resolves a logged model's files (``models:/<model_id>``, also behind
    ``runs:/<run_id>/model``) through a client of the global tracking URI, whatever
    ``tracking_uri`` its callers pass."""
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry)
