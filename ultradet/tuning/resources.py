"""What a trial holds on the Ray cluster: the one place where a trial's CPUs and GPUs are split
between its own process and its data-parallel workers."""

from __future__ import annotations

import math

from ultradet.config import ConfigError

# A data-parallel trial's own process only starts its Ray Train workers and waits for them; Ray
# Train reserves the workers' resources in a placement group of its own, not the trial's. The
# trial process keeps this sliver of a CPU (Tune cannot start a trial that asks for nothing) and
# the workers split the rest of the trial's CPUs.
TRIAL_DRIVER_CPUS = 0.01


def split_trial_resources(cpus: float, gpus: float, workers: int) -> tuple[dict[str, float], dict[str, float] | None]:
    """Resources of a trial's own process (for ``tune.with_resources``) and of each of its Ray
    Train workers (``None`` when the trial trains in its own process, ``workers`` = 1).

    With ``workers`` > 1 the trial's process holds :data:`TRIAL_DRIVER_CPUS` and each worker
    ``(cpus - TRIAL_DRIVER_CPUS) / workers`` CPUs and ``gpus / workers`` GPUs, rounded down to
    Ray's 0.0001 resource unit: the trial holds at most ``cpus`` and ``gpus`` in all.

    Raises:
        ConfigError: ``workers`` < 1, or ``cpus`` leave nothing for the workers.
    """
    if workers < 1:
        raise ConfigError(f"workers_per_trial (--workers-per-trial) must be >= 1, got {workers}")
    if workers == 1:
        return {"cpu": cpus, "gpu": gpus}, None
    if cpus <= TRIAL_DRIVER_CPUS:
        raise ConfigError(f"cpus_per_trial (--cpus-per-trial) must exceed {TRIAL_DRIVER_CPUS} with {workers} workers per trial, got {cpus}")
    per_worker = {"CPU": math.floor((cpus - TRIAL_DRIVER_CPUS) / workers * 1e4) / 1e4}
    if gpus:
        per_worker["GPU"] = math.floor(gpus / workers * 1e4) / 1e4
    return {"cpu": TRIAL_DRIVER_CPUS, "gpu": 0}, per_worker
