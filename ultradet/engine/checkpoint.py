"""Atomic, resumable training checkpoints."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

import torch

from ultradet.modeling.weights_file import CheckpointError, load_file

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


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The trainer checkpoints in ``output_dir``, oldest (lowest iteration) first."""
    return sorted((p for p in Path(output_dir).glob("model_*.pth") if _CKPT.search(p.name)), key=checkpoint_iteration)


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint with the highest iteration in ``output_dir``, or None (whether it loads or
    not: :func:`resume_point` finds the newest one that does)."""
    found = checkpoints(output_dir)
    return found[-1] if found else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict written by the trainer.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file does not load (truncated, corrupt) or is not a trainer
            checkpoint (no ``model`` entry).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = load_file(path, map_location=map_location, weights_only=False)  # RNG states are numpy arrays
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not an UltraDet checkpoint (no 'model' entry)")
    return state


def resume_point(output_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict] | None:
    """The newest checkpoint of ``output_dir`` that loads, and its state; None when there is no
    checkpoint. A newer one that does not load (a disk that filled up, a bad copy) is skipped
    with a warning naming it, so an interrupted run resumes from its last intact checkpoint.

    Raises:
        CheckpointError: there are checkpoints but none loads (each one named): delete them to
            train from the start.
    """
    problems = []
    for path in reversed(checkpoints(output_dir)):
        try:
            state = load_checkpoint(path, map_location=map_location)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        for problem in problems:
            warnings.warn(f"{problem}; resuming from {path.name} instead")
        return path, state
    if problems:
        raise CheckpointError(
            f"no checkpoint in {output_dir} can be read, so the interrupted run cannot resume: "
            + "; ".join(problems) + ". Delete them to train from the start."
        )
    return None
