"""Provenance tags of a run: git commit, DVC stage, device, library versions."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from typing import Any

from ultradet.experiment_log.keys import as_tags
from ultradet.experiment_log.layout import TAG_FOLD, TAG_STAGE


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the working directory's repository, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def device_of(cfg: Any) -> str:
    """The device ``cfg.device`` resolves to on this machine (``"cpu"``, ``"cuda"``)."""
    # Imported here: the report stage uses this module without needing torch.
    from ultradet.engine.runtime import resolve_device

    return str(resolve_device(getattr(cfg, "device", "auto")))


def standard_tags(*, stage: str | None = None, fold: int | None = None, device: str | None = None) -> dict[str, str]:
    """Provenance tags: git commit, DVC stage (``$DVC_STAGE`` when DVC runs us), device,
    torch/torchvision versions, fold, Python version. ``None`` values are left out."""
    tags = {
        "mlflow.source.git.commit": git_commit(),
        TAG_STAGE: stage,
        "dvc.stage": os.environ.get("DVC_STAGE"),
        TAG_FOLD: fold,
        "device": device,
        "torch": _version("torch"),
        "torchvision": _version("torchvision"),
        "python": sys.version.split()[0],
    }
    return as_tags(tags)
