"""Run a Ray Tune search: OptunaSearch (seeded, define-by-run conditional space) under an ASHA
scheduler, retries for crashed trials, resumable with ``Tuner.restore``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ultradet.tuning.space import SearchSpace
from ultradet.tuning.resources import split_trial_resources
from ultradet.tuning.setup import TrialSetup
from ultradet.tuning.trial import run_trial


@dataclass(frozen=True)
class SearchOptions:
    """Resources and budget of a search (all from the command line)."""

    name: str
    storage_path: str
    num_samples: int
    max_concurrent: int
    cpus_per_trial: float
    gpus_per_trial: float
    workers_per_trial: int
    max_failures: int
    grace_period: int   # evaluations a trial always gets before ASHA may stop it
    max_evaluations: int


def _trainable(setup: TrialSetup, options: SearchOptions):
    from ray import tune

    own, _ = split_trial_resources(options.cpus_per_trial, options.gpus_per_trial, options.workers_per_trial)
    return tune.with_resources(tune.with_parameters(run_trial, setup=setup), own)


def build_tuner(space: SearchSpace, setup: TrialSetup, options: SearchOptions):
    """A fresh ``ray.tune.Tuner`` for ``space``. ASHA and the searcher rank trials on
    ``<metric>_score`` (the metric with NaN mapped to a worst value)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    score = f"{setup.metric}_score"
    searcher = OptunaSearch(space=space.suggest, metric=score, mode=setup.mode, seed=setup.seed)
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        metric=score,
        mode=setup.mode,
        grace_period=options.grace_period,
        max_t=options.max_evaluations,
    )
    return tune.Tuner(
        _trainable(setup, options),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent),
            scheduler=scheduler,
            num_samples=options.num_samples,
        ),
        run_config=tune.RunConfig(
            name=options.name,
            storage_path=os.path.abspath(options.storage_path),
            failure_config=tune.FailureConfig(max_failures=options.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=1,
        ),
    )


def restore_tuner(path: str | Path, setup: TrialSetup, options: SearchOptions):
    """Continue an interrupted search from its experiment folder (unfinished and errored trials
    resume from their last checkpoints).

    Raises:
        FileNotFoundError: ``path`` holds no restorable Tune experiment.
    """
    from ray import tune

    path = os.path.abspath(path)
    if not tune.Tuner.can_restore(path):
        raise FileNotFoundError(f"{path}: not a resumable Ray Tune experiment folder")
    return tune.Tuner.restore(path, trainable=_trainable(setup, options), resume_errored=True)
