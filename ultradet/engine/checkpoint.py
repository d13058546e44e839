"""Atomic, resumable training checkpoints."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch

_CKPT = re.compile(r"model_(\d{7})\.pth$")


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``, so a
    crash never leaves a truncated file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_path(output_dir: str | Path, iteration: int) -> Path:
    """``<output_dir>/model_<iteration:07d>.pth``; ``iteration`` = optimizer steps done."""
    return Path(output_dir) / f"model_{iteration:07d}.pth"


def checkpoint_iteration(path: str | Path) -> int:
    """The iteration encoded in a checkpoint's name (``model_0000123.pth`` -> 123).

    Raises:
        ValueError: the name is not a trainer checkpoint name.
    """
    match = _CKPT.search(Path(path).name)
    if match is None:
        raise ValueError(f"{path}: not a checkpoint name of the form model_XXXXXXX.pth")
    return int(match.group(1))


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint with the highest iteration in ``output_dir``, or None."""
    found = [p for p in Path(output_dir).glob("model_*.pth") if _CKPT.search(p.name)]
    return max(found, key=checkpoint_iteration, default=None)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict written by the trainer.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a trainer checkpoint (no ``model`` entry).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path}: not an UltraDet checkpoint (no 'model' entry)")
    return state
