import pandas as pd
import pytest
import yaml

from ultradet.config import load_experiment
from ultradet.tuning import results as res
from ultradet.tuning.space import load_search_space

SPACE = {
    "experiment": "base",
    "params": {
        "model.proposal_generator.name": {"choice": ["rpn", "poto"]},
        "model.poto.poto_alpha": {"uniform": [0.2, 1.0], "when": {"model.proposal_generator.name": "poto"}},
        "model.rpn.anchor_aspect_ratios": {"choice": [[0.5, 1.0], [1.0]], "when": {"model.proposal_generator.name": "rpn"}},
    },
}


@pytest.fixture
def space(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\n")
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    return load_search_space(path, experiments_dir=tmp_path)


def grid_frame():
    """What ResultGrid.get_dataframe() gives: one row per trial, config/<key> columns, list choices as JSON."""
    return pd.DataFrame({
        "trial_id": ["a", "b", "c", "d"],
        "config/model.proposal_generator.name": ["rpn", "poto", "poto", "rpn"],
        "config/model.poto.poto_alpha": [float("nan"), 0.3, 0.9, float("nan")],
        "config/model.rpn.anchor_aspect_ratios": ["[0.5, 1.0]", None, None, "[1.0]"],
        "FP90": [5.0, float("nan"), 2.0, 7.0],
        "training_iteration": [2, 1, 2, 2],
    })


def test_top_k_sorts_by_mode_with_nan_last(space):
    low = res.top_k(grid_frame(), space, metric="FP90", mode="min", k=4)
    assert list(low["trial_id"]) == ["c", "a", "d", "b"]
    high = res.top_k(grid_frame(), space, metric="FP90", mode="max", k=2)
    assert list(high["trial_id"]) == ["d", "a"]
    assert low.loc[1, "model.rpn.anchor_aspect_ratios"] == [0.5, 1.0]  # decoded


def test_top_k_names_what_was_reported_when_metric_missing(space):
    with pytest.raises(KeyError, match="no trial reported 'AP50'"):
        res.top_k(grid_frame(), space, metric="AP50", mode="max", k=1)


def test_best_config_is_a_loadable_experiment_without_inactive_params(space, tmp_path):
    table = res.top_k(grid_frame(), space, metric="FP90", mode="min", k=2)
    best = res.best_overrides(table, space)
    assert best == {"model.proposal_generator.name": "poto", "model.poto.poto_alpha": 0.9}
    path = res.best_config_path(tmp_path, "search")
    assert path == tmp_path / "tuned" / "search.yaml"  # beside the experiment definitions, not among them
    res.write_best_experiment(space, best, path, experiments_dir=tmp_path, metric_value=2.0)
    assert sorted(p.name for p in tmp_path.glob("*.yaml")) == ["base.yaml", "space.yaml"]
    cfg = load_experiment("tuned/search", experiments_dir=tmp_path)  # the name params.yaml models: takes
    assert cfg.name == "tuned/search" and cfg.display_name == "tuned/search (tuned)"
    assert cfg.model.proposal_generator.name == "poto"
    assert cfg.model.poto.poto_alpha == pytest.approx(0.9)


def test_apply_writes_train_overrides_and_keeps_comments(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("# top comment\ntrain:\n  profile: p.yaml  # the profile\n  overrides: {}\nmodels: [a]\n")
    res.apply_to_params(params, {"model.poto.poto_alpha": 0.5})
    text = params.read_text()
    assert "# top comment" in text and "# the profile" in text
    data = yaml.safe_load(text)
    assert data["train"] == {"profile": "p.yaml", "overrides": {"model.poto.poto_alpha": 0.5}}
    assert data["models"] == ["a"]


def test_best_config_outside_the_experiments_folder_keeps_its_base(space, tmp_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("elsewhere") / "best.yaml"  # --output
    res.write_best_experiment(space, {"model.poto.poto_alpha": 0.4}, out, experiments_dir=tmp_path, metric_value=1.0)
    cfg = load_experiment("best", experiments_dir=out.parent)
    assert cfg.name == "best" and cfg.model.poto.poto_alpha == pytest.approx(0.4)
