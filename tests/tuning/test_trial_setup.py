"""The trial setup a search hands to its Ray workers, which run in folders of their own."""

import pytest
import yaml

from ultradet.config import ConfigError
from ultradet.tuning.driver import SearchRequest, _trial_setup
from ultradet.tuning.space import load_search_space
from ultradet.tuning.resources import TRIAL_DRIVER_CPUS, split_trial_resources


def test_relative_weight_paths_become_absolute(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "base.yaml").write_text(
        "name: base\nmodel:\n  weights: models/pretrain/model_final.pth\n  backbone: {norm: frozen_bn, freeze_at: 2}\n")
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"experiment": "base", "params": {"solver.base_lr": {"loguniform": [1e-4, 1e-3]}}}))
    space = load_search_space(tmp_path / "space.yaml", experiments_dir=tmp_path / "experiments")
    request = SearchRequest(search_space=tmp_path / "space.yaml", max_iter=2)
    params = {"data": {"out": str(tiny_dataset), "num_folds": 4}, "train": {}}
    setup = _trial_setup(request, params, space, "sqlite:///x.db", None)
    assert setup.overrides["model.weights"] == str(tmp_path / "models" / "pretrain" / "model_final.pth")


def test_data_parallel_trial_resources_split_between_its_process_and_its_workers():
    assert split_trial_resources(2.0, 0.5, 1) == ({"cpu": 2.0, "gpu": 0.5}, None)
    own, worker = split_trial_resources(2.0, 0.0, 2)
    assert own == {"cpu": TRIAL_DRIVER_CPUS, "gpu": 0} and worker == {"CPU": 0.995}
    # 3 workers: (4 - 0.01) / 3 = 1.33 rounded down to Ray's 0.0001; the GPUs split evenly.
    own, worker = split_trial_resources(4.0, 3.0, 3)
    assert worker == {"CPU": 1.33, "GPU": 1.0} and own["cpu"] + 3 * worker["CPU"] <= 4.0


def test_search_request_rejects_workers_that_cannot_split_the_trial():
    with pytest.raises(ConfigError, match=r"workers_per_trial \(--workers-per-trial\) must be >= 1"):
        SearchRequest(search_space="s.yaml", workers_per_trial=0)
    with pytest.raises(ConfigError, match=r"cpus_per_trial \(--cpus-per-trial\) must exceed"):
        SearchRequest(search_space="s.yaml", workers_per_trial=2, cpus_per_trial=0.01)


def test_global_batch_must_split_over_the_workers_of_a_trial(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "base.yaml").write_text("name: base\nsolver: {clips_per_batch: 3}\n")
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"experiment": "base", "params": {"solver.base_lr": {"loguniform": [1e-4, 1e-3]}}}))
    space = load_search_space(tmp_path / "space.yaml", experiments_dir=tmp_path / "experiments")
    request = SearchRequest(search_space=tmp_path / "space.yaml", max_iter=2, workers_per_trial=2, cpus_per_trial=2)
    params = {"data": {"out": str(tiny_dataset), "num_folds": 4}, "train": {}}
    with pytest.raises(ConfigError):
        _trial_setup(request, params, space, "sqlite:///x.db", None)
