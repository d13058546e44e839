"""What every trial of a search needs besides its sampled config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrialSetup:
    """Everything a trial needs besides the sampled config (picklable, sent to Ray workers;
    paths absolute, since trials run in folders of their own)."""

    experiment: str
    experiments_dir: str
    profile: str | None
    overrides: dict[str, Any]
    data_root: str
    num_folds: int
    test_fold: int
    val_fraction: float
    eval_period: int
    metric: str
    mode: str
    seed: int
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    workers_per_trial: int = 1   # > 1: data-parallel Ray Train workers, splitting the trial's resources
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
