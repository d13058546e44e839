import optuna
import pytest
import yaml

from ultradet.config import ConfigError
from ultradet.tuning.space import decode, load_search_space


@pytest.fixture
def experiments(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\n")
    return tmp_path


def write_space(experiments, params, experiment="base"):
    path = experiments / "space.yaml"
    path.write_text(yaml.safe_dump({"experiment": experiment, "params": params}, sort_keys=False))
    return path


CONDITIONAL = {
    "model.proposal_generator.name": {"choice": ["rpn", "poto"]},
    "model.poto.poto_alpha": {"uniform": [0.2, 1.0], "when": {"model.proposal_generator.name": "poto"}},
    "model.rpn.anchor_aspect_ratios": {
        "choice": [[0.5, 1.0, 2.0], [1.0]],
        "when": {"model.proposal_generator.name": "rpn"},
    },
    "model.temporal.interval_pre_test": {"randint": [2, 4]},
}


def sample(space, n, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        space.suggest(trial)
        out.append(decode(trial.params))
        study.tell(trial, 0.0)
    return out


def test_conditional_params_appear_only_when_their_condition_holds(experiments):
    space = load_search_space(write_space(experiments, CONDITIONAL), experiments_dir=experiments)
    configs = sample(space, 40)
    for config in configs:
        poto = config["model.proposal_generator.name"] == "poto"
        assert ("model.poto.poto_alpha" in config) == poto
        assert ("model.rpn.anchor_aspect_ratios" in config) == (not poto)
        assert 2 <= config["model.temporal.interval_pre_test"] <= 4
    alphas = [c["model.poto.poto_alpha"] for c in configs if "model.poto.poto_alpha" in c]
    ratios = [c["model.rpn.anchor_aspect_ratios"] for c in configs if "model.rpn.anchor_aspect_ratios" in c]
    assert alphas and all(0.2 <= a <= 1.0 for a in alphas)
    assert ratios and all(r in ([0.5, 1.0, 2.0], [1.0]) for r in ratios)  # lists survive the JSON round trip


def test_same_seed_same_samples(experiments):
    space = load_search_space(write_space(experiments, CONDITIONAL), experiments_dir=experiments)
    assert sample(space, 5, seed=3) == sample(space, 5, seed=3)
    assert sample(space, 5, seed=3) != sample(space, 5, seed=4)


def test_unknown_config_key_is_rejected_with_valid_keys(experiments):
    path = write_space(experiments, {"model.temporal.interval_pre": {"randint": [1, 2]}})
    with pytest.raises(ConfigError, match=r"unknown key 'model.temporal.interval_pre'.*interval_pre_test"):
        load_search_space(path, experiments_dir=experiments)


def test_when_must_reference_an_earlier_param(experiments):
    path = write_space(experiments, {"solver.base_lr": {"uniform": [1e-4, 1e-3], "when": {"model.proposal_generator.name": "poto"}}})
    with pytest.raises(ConfigError, match="must be listed above it"):
        load_search_space(path, experiments_dir=experiments)


def test_malformed_distribution(experiments):
    path = write_space(experiments, {"solver.base_lr": {"uniform": [1e-4]}})
    with pytest.raises(ConfigError, match=r"solver.base_lr.uniform must be a list \(\[low, high\]\)"):
        load_search_space(path, experiments_dir=experiments)


def test_shipped_search_spaces_fit_the_schema():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "experiments"
    files = sorted((root / "search").glob("*.yaml"))
    assert files
    for path in files:
        space = load_search_space(path, experiments_dir=root)
        assert space.params


def test_misspelled_top_level_key_is_rejected(experiments):
    path = experiments / "space.yaml"
    path.write_text(yaml.safe_dump({"experiment": "base", "metirc": "AP50", "params": {"solver.base_lr": {"uniform": [1e-4, 1e-3]}}}))
    with pytest.raises(ConfigError, match=r"space.yaml: unknown top-level key\(s\) 'metirc'; valid keys: experiment, metric, mode, params"):
        load_search_space(path, experiments_dir=experiments)


@pytest.mark.parametrize(
    "spec, problem",
    [
        ({"uniform": [1.0, 0.0]}, r"low 1.0 is above high 0.0"),
        ({"loguniform": [1.0e-3, 1.0e-4]}, r"low 0.001 is above high 0.0001"),
        ({"loguniform": [0.0, 1.0e-3]}, r"low 0.0 must be > 0"),
        ({"loguniform": [-1.0, 1.0]}, r"low -1.0 must be > 0"),
        ({"randint": [8, 2]}, r"low 8 is above high 2"),
        ({"randint": [1.5, 4]}, r"bounds must be integers"),
        ({"uniform": ["a", 1.0]}, r"bounds must be numbers"),
    ],
)
def test_bad_range_is_rejected_naming_the_file_and_the_key(experiments, spec, problem):
    path = write_space(experiments, {"solver.base_lr": spec})
    kind = next(iter(spec))
    with pytest.raises(ConfigError, match=rf"^{path}: params\.solver\.base_lr\.{kind}: {problem}"):
        load_search_space(path, experiments_dir=experiments)


def test_a_range_of_one_value_is_allowed(experiments):
    # Optuna accepts low == high (the parameter is then fixed): not an error.
    path = write_space(experiments, {"solver.base_lr": {"uniform": [1.0e-4, 1.0e-4]}})
    assert load_search_space(path, experiments_dir=experiments).params[0].args == (1.0e-4, 1.0e-4)
