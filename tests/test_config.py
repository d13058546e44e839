"""Layered config loading: every layer is validated, and errors name the layer they come from."""

from __future__ import annotations

import pytest

from ultradet.config import ConfigError, load_config, load_experiment


@pytest.fixture
def experiments(tmp_path):
    (tmp_path / "good.yaml").write_text("name: good\nsolver: {max_iter: 50}\n")
    (tmp_path / "bad.yaml").write_text("name: bad\nsolver: {max_iter: ten}\n")
    (tmp_path / "profile.yaml").write_text("solver: {max_iter: 200}\n")
    return tmp_path


def test_layers_merge_in_order(experiments):
    cfg = load_experiment("good", experiments_dir=experiments, profile=experiments / "profile.yaml", overrides={"solver.max_iter": 7})
    assert (cfg.name, cfg.solver.max_iter) == ("good", 7)
    assert load_experiment("good", experiments_dir=experiments, profile=experiments / "profile.yaml").solver.max_iter == 200


def test_invalid_value_is_not_masked_by_the_profile(experiments):
    # The profile sets the same key validly; the experiment file's bad value must still fail, naming that file.
    with pytest.raises(ConfigError, match=r"invalid configuration \(.*bad\.yaml\):\n  solver.max_iter: .*'ten'"):
        load_experiment("bad", experiments_dir=experiments, profile=experiments / "profile.yaml")


def test_invalid_profile_is_named(experiments):
    (experiments / "profile.yaml").write_text("solver: {max_iter: 0}\n")
    with pytest.raises(ConfigError, match=r"invalid configuration \(.*profile\.yaml\)"):
        load_experiment("good", experiments_dir=experiments, profile=experiments / "profile.yaml")


def test_override_error_names_the_overrides_not_the_files(experiments):
    with pytest.raises(ConfigError, match=r"invalid configuration \(overrides solver.max_iter, seed\):\n  solver.max_iter") as err:
        load_experiment("good", experiments_dir=experiments, overrides={"solver.max_iter": "ten", "seed": 1})
    assert "good.yaml" not in str(err.value)


def test_unknown_override_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'solver.max_iters'; valid keys here: .*max_iter"):
        load_config(overrides=["solver.max_iters=3"])


@pytest.fixture
def specialised(tmp_path):
    """An experiment whose ``profiles.cpu`` section lengthens training under the cpu profile."""
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "cpu.yaml").write_text("solver: {max_iter: 100, base_lr: 2.0e-4}\n")
    (tmp_path / "profiles" / "paper.yaml").write_text("solver: {max_iter: 10000}\n")
    (tmp_path / "dense.yaml").write_text("name: dense\nsolver: {max_iter: 50}\nprofiles:\n  cpu: {solver: {max_iter: 600}}\n")
    return tmp_path


def test_profile_section_applies_after_its_profile_only(specialised):
    cpu = load_experiment("dense", experiments_dir=specialised, profile=specialised / "profiles" / "cpu.yaml")
    assert (cpu.solver.max_iter, cpu.solver.base_lr) == (600, 2.0e-4)  # the model's section wins over the profile
    paper = load_experiment("dense", experiments_dir=specialised, profile=specialised / "profiles" / "paper.yaml")
    assert paper.solver.max_iter == 10000
    assert load_experiment("dense", experiments_dir=specialised).solver.max_iter == 50
    assert load_config(specialised / "dense.yaml").solver.max_iter == 50  # a bare file load ignores the section
    overridden = load_experiment(
        "dense", experiments_dir=specialised, profile=specialised / "profiles" / "cpu.yaml", overrides={"solver.max_iter": 7}
    )
    assert overridden.solver.max_iter == 7  # overrides stay last


def test_profile_section_naming_no_profile_is_refused(specialised):
    (specialised / "typo.yaml").write_text("name: typo\nprofiles:\n  cpuu: {solver: {max_iter: 600}}\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: profiles names \['cpuu'\], not a profile in .*profiles \(cpu, paper\)"):
        load_experiment("typo", experiments_dir=specialised, profile=specialised / "profiles" / "cpu.yaml")
    # Without a profile nothing is applied, so nothing is checked (an experiment file copied elsewhere still loads).
    assert load_experiment("typo", experiments_dir=specialised).name == "typo"


def test_invalid_profile_section_is_named(specialised):
    (specialised / "bad.yaml").write_text("name: bad\nprofiles:\n  cpu: {solver: {max_iter: ten}}\n")
    with pytest.raises(ConfigError, match=r"invalid configuration \(.*bad\.yaml profiles\.cpu\)"):
        load_experiment("bad", experiments_dir=specialised, profile=specialised / "profiles" / "cpu.yaml")
