"""The data-parallel options of params.yaml's ``train`` section: defaults, and the errors raised
before anything starts."""

import pytest

from ultradet.config import ConfigError, ExperimentConfig
from ultradet.engine.ray_launch import DataParallelOptions


def test_defaults_mean_one_worker_without_ray():
    options = DataParallelOptions.from_params({"profile": "x.yaml", "overrides": {}})
    assert options == DataParallelOptions(num_workers=1, use_gpu=False, ray_address=None)
    assert options.check(ExperimentConfig()) == 1


def test_accumulation_steps_fill_the_global_batch():
    cfg = ExperimentConfig.model_validate({"solver": {"clips_per_batch": 8, "clips_per_worker": 1}})
    assert DataParallelOptions.from_params({"num_workers": 1}).check(cfg) == 8
    assert DataParallelOptions.from_params({"num_workers": 2}).check(cfg) == 4
    assert DataParallelOptions.from_params({"num_workers": 8, "use_gpu": True}).check(cfg) == 1


@pytest.mark.parametrize(
    ("train", "solver", "device", "message"),
    [
        ({"num_workers": 3}, {"clips_per_batch": 8}, "auto", r"clips_per_batch \(8\) must be a multiple of train.num_workers \(3\)"),
        ({"num_workers": 0}, {}, "auto", r"train.num_workers must be an integer >= 1, got 0"),
        ({"num_workers": 2, "use_gpu": True}, {"clips_per_batch": 2}, "cpu", r"use_gpu is true but the config's device is 'cpu'"),
        ({"num_workers": 2}, {"clips_per_batch": 2}, "cuda", r"device is 'cuda' but train.use_gpu is false"),
    ],
)
def test_inconsistent_settings_are_refused(train, solver, device, message):
    cfg = ExperimentConfig.model_validate({"device": device, "solver": solver})
    with pytest.raises(ConfigError, match=message):
        DataParallelOptions.from_params(train).check(cfg)
