"""A trained detector named by the user: a run folder (``runs/<model>/fold<k>``) or an MLflow model
URI, and its default operating point (the fold's score threshold at recall 0.9)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from mlflow import MlflowClient

from ultradet.config import ExperimentConfig, load_config
from ultradet.engine.launch import load_trained_model
from ultradet.engine.runtime import resolve_device
from ultradet.errors import UserError
from ultradet.evaluation.names import threshold_name
from ultradet.experiment_log.model import CONFIG_FILE, WEIGHTS_FILE, load_logged_detector
from ultradet.layout import sibling_fold_dir

OPERATING_RECALL = 0.9  # the default threshold is the fold's thr90 (precision/FP at recall 0.9)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")  # runs:/..., models:/..., s3://..., file:///...


class ModelSourceError(UserError, ValueError):
    """MODEL names no run folder or model, a run folder without weights or config, or a model
    without a default operating point; the message says what to give instead."""


@dataclass(frozen=True)
class TrainedDetector:
    """A loaded detector and where it came from.

    Attributes:
        cfg: its resolved config; model: the detector, eval mode, on its device.
        source: what the user named (run folder or URI).
        run_dir: the run folder, or None for an MLflow model.
        run_id, tracking_uri: the MLflow run that logged it and its store (MLflow models only).
    """

    cfg: ExperimentConfig
    model: torch.nn.Module
    source: str
    run_dir: Path | None = None
    run_id: str | None = None
    tracking_uri: str | None = None

    def default_threshold(self) -> tuple[float, str]:
        """The fold's score threshold at recall 0.9 (``thr90``) and where it was read: a run
        folder's ``results/<model>/fold<k>/metrics.json`` (beside ``runs/``); an MLflow model's
        source run's metric ``thr90`` (logged there by the evaluate stage).

        Raises:
            ModelSourceError: no such file or metric, or the fold's thr90 is null (it never
                reached recall 0.9); the message suggests ``--score-thresh``.
        """
        name = threshold_name(OPERATING_RECALL)
        if self.run_dir is not None:
            where = sibling_fold_dir(self.run_dir, "results") / "metrics.json"
            value = json.loads(where.read_text()).get(name) if where.is_file() else None
            where_text = str(where)
        else:
            where_text = f"metric {name} of MLflow run {self.run_id} in {self.tracking_uri}"
            value = MlflowClient(self.tracking_uri).get_run(self.run_id).data.metrics.get(name) if self.run_id else None
        if value is None or not math.isfinite(value):
            raise ModelSourceError(
                f"no default score threshold for {self.source}: {name} not found or null ({where_text}; the evaluate "
                f"stage writes it, null when the fold never reaches recall {OPERATING_RECALL}); pass --score-thresh"
            )
        return float(value), where_text


def load_detector(source: str, *, tracking_uri: str, device: str | None = None) -> TrainedDetector:
    """The detector at ``source``: an existing folder is a run folder (``config.yaml`` +
    ``model_final.pth``, as the train stage leaves it), otherwise ``scheme:/...`` is an MLflow
    model URI resolved in ``tracking_uri`` (``ultradet.experiment_log.model``).

    Args:
        device: ``"cpu"``, ``"cuda"``, ...; default: the config's ``device``.

    Raises:
        ModelSourceError: ``source`` is neither, or the run folder lacks its config or weights.
        ModelLoadError: the MLflow store cannot resolve the URI.
    """
    path = Path(source)
    if path.is_dir():
        for name, what in ((CONFIG_FILE, "its resolved config"), (WEIGHTS_FILE, "trained weights (did training finish?)")):
            if not (path / name).is_file():
                raise ModelSourceError(f"{path}: not a trained run folder: {name} ({what}) is missing")
        cfg = load_config(path / CONFIG_FILE)
        target = resolve_device(device) if device else None
        try:
            model = load_trained_model(cfg, path / WEIGHTS_FILE, device=target)
        except (ValueError, RuntimeError) as exc:  # not a checkpoint, or weights of another config
            first_line = str(exc).strip().splitlines()[0]
            raise ModelSourceError(f"{path / WEIGHTS_FILE}: cannot load it into {CONFIG_FILE}'s model: {first_line}") from None
        return TrainedDetector(cfg, model, source, run_dir=path.resolve())
    if _URI.match(source):
        logged = load_logged_detector(source, tracking_uri=tracking_uri, device=device)
        return TrainedDetector(logged.cfg, logged.model, source, run_id=logged.run_id, tracking_uri=tracking_uri)
    raise ModelSourceError(
        f"{source}: no such run folder (runs/<model>/fold<k>) and not an MLflow model URI (runs:/<run_id>/model, models:/<name>/<version>)"
    )
