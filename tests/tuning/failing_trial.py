"""A trainable whose first attempt of every trial crashes when training starts (after the trial
opened its MLflow run), then runs normally (imported by name: pytest puts this folder on sys.path)."""

from pathlib import Path

from ultradet.engine.trainer import Trainer
from ultradet.tuning.trial import run_trial


class FailOnce:
    """``run_trial`` with ``Trainer.train`` raising on each trial's first attempt;
    ``marker_dir/<trial_id>`` records that the attempt happened."""

    def __init__(self, marker_dir: str | Path):
        self.marker_dir = Path(marker_dir)

    def __call__(self, config: dict, setup) -> None:
        from ray import tune

        marker = self.marker_dir / tune.get_context().get_trial_id()
        if marker.exists():
            return run_trial(config, setup)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

        def crash(trainer, **kwargs):
            raise RuntimeError(f"injected failure for trial {marker.name} (first attempt)")

        original, Trainer.train = Trainer.train, crash
        try:
            run_trial(config, setup)
        finally:
            Trainer.train = original
