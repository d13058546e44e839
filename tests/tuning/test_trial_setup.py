"""The trial setup a search hands to its Ray workers, which run in folders of their own."""

import yaml

from ultradet.tuning.driver import SearchRequest, _trial_setup
from ultradet.tuning.space import load_search_space


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
