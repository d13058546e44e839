"""The Ray Tune trainable: one trial = one config trained on the training folds and evaluated
every ``eval_period`` iterations on a patient-level validation split carved from them (never the
test fold).

A trial trains in its own process, or, with ``workers_per_trial`` > 1, on that many Ray Train
workers that it starts itself (:mod:`ultradet.tuning.data_parallel`)."""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ultradet.config import load_experiment
from ultradet.data import carve_validation, load_videos, split_by_folds
from ultradet.engine.launch import build_trainer
from ultradet.tuning.reporting import PeriodicValidation, restore_checkpoints
from ultradet.tuning.setup import TrialSetup
from ultradet.tuning.space import decode


def run_trial(config: dict, setup: TrialSetup) -> None:
    """Ray Tune function trainable (use with ``tune.with_parameters(run_trial, setup=...)``)."""
    sampled = decode(config)
    cfg = load_experiment(
        setup.experiment,
        experiments_dir=setup.experiments_dir,
        profile=setup.profile,
        overrides={**setup.overrides, **sampled, "seed": setup.seed},
    )
    videos = load_videos(setup.data_root, "trainval", num_folds=setup.num_folds)
    pool, _test = split_by_folds(videos, test_folds=[setup.test_fold])
    train, val = carve_validation(pool, fraction=setup.val_fraction, seed=setup.seed)
    gt = json.loads((Path(setup.data_root) / "trainval.json").read_text())

    run = _trial_run(setup, sampled, cfg)
    if setup.workers_per_trial > 1:
        from ray.exceptions import ActorDiedError

        from ultradet.tuning.data_parallel import train_on_workers

        # Tune stops a data-parallel trial by ending its Ray Train controller.
        with _closing(run, cfg.solver.max_iter, stopped_by_tune=lambda exc: isinstance(exc, ActorDiedError)):
            train_on_workers(setup, cfg, train, val, gt, run)
        return

    from ray import tune

    workdir = Path(tempfile.mkdtemp(prefix="trial-"))
    try:
        restore_checkpoints(tune.get_checkpoint(), workdir)
        trainer = build_trainer(cfg, train, workdir, progress=False)
        trainer.register_hook(PeriodicValidation(
            trainer, cfg=cfg, eval_period=setup.eval_period, metric=setup.metric, mode=setup.mode,
            val_videos=val, gt=gt, run=run,
        ))
        # Tune ends a trial in its own process with sys.exit(0) inside tune.report.
        with _closing(run, cfg.solver.max_iter, stopped_by_tune=lambda exc: isinstance(exc, SystemExit) and exc.code in (0, None)):
            trainer.train(resume=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def _closing(run, max_iter: int, *, stopped_by_tune: Callable[[BaseException], bool]) -> Iterator[None]:
    """Close the trial's run (None: no tracking) when the block ends: FINISHED when it returns,
    FAILED when it raises, and when Tune ended the trial (``stopped_by_tune(exc)``: ASHA
    stopping it early, or the scheduler's max_t reached at the last evaluation) the status of
    :func:`~ultradet.experiment_log.stopped_trial_status`."""
    if run is None:
        yield
        return
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    except BaseException as exc:
        if stopped_by_tune(exc):
            status = run.stopped_status(max_iter)
        raise
    finally:
        run.end(status=status)


def _trial_run(setup: TrialSetup, sampled: dict, cfg):
    if setup.tracking_uri is None:
        return None
    from ray import tune

    from ultradet.experiment_log import TrialRun

    context = tune.get_context()
    return TrialRun.start(
        uri=setup.tracking_uri,
        parent_run_id=setup.parent_run_id,
        trial_id=context.get_trial_id(),
        trial_name=context.get_trial_name(),
        sampled=sampled,
        cfg=cfg,
    )
