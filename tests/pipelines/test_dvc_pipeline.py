"""`dvc repro` end to end on a tiny project: 2 models x 2 folds, real stages, real MLflow store."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline_project import run

from ultradet.tuning.results import best_config_path, write_best_experiment
from ultradet.tuning.space import load_search_space

pytestmark = pytest.mark.slow

METRICS = ["Pr80", "Pr90", "FP80", "FP90", "AP50", "R16", "FPS"]
PERCENT = {"Pr80", "Pr90", "AP50", "R16"}


def fold_metrics(repo, model):
    return [json.loads((repo / "results" / model / f"fold{k}" / "metrics.json").read_text()) for k in (0, 1)]


def stages_to_run(repo, env):
    """Names of the stages `dvc repro` would run now."""
    out = run(["dvc", "status", "--json"], repo, env).stdout
    return set(json.loads(out or "{}"))


def write_search_result(repo):
    """What `pipelines/tune.py` writes at the end of a search of experiments/search/poto_alpha.yaml
    (its default --output), without running one."""
    space = load_search_space(repo / "experiments/search/poto_alpha.yaml", experiments_dir=repo / "experiments")
    path = best_config_path(repo / "experiments", "poto_alpha")
    write_best_experiment(space, {"model.poto.poto_alpha": 0.5}, path, experiments_dir=repo / "experiments", metric_value=1.0)


def test_repro_builds_the_table_from_fold_metrics_and_reruns_only_what_changed(project):
    repo, env = project
    run(["dvc", "repro"], repo, env)

    table = pd.read_csv(repo / "reports" / "paper_table.csv")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    ddof = params["report"]["ddof"]
    for model in ("fasterrcnn", "ultradet"):
        folds = fold_metrics(repo, model)
        for metric in METRICS:
            values = np.array([f[metric] for f in folds], dtype=float) * (100 if metric in PERCENT else 1)
            row = table[(table["model"] == model) & (table["metric"] == metric)].iloc[0]
            if np.isnan(values).any():
                assert math.isnan(row["mean"])
                continue
            assert row["mean"] == pytest.approx(values.mean(), abs=1e-9)
            assert row["sd"] == pytest.approx(values.std(ddof=ddof), abs=1e-9)
            assert row["n"] == 2

    # dvc metrics show lists every model x fold
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo, env).stdout)
    files = {path for workspace in shown.values() for path in workspace["data"]}
    for model in ("fasterrcnn", "ultradet"):
        for k in (0, 1):
            assert f"results/{model}/fold{k}/metrics.json" in files

    # a second repro has nothing to do, even after a search wrote its best config
    assert stages_to_run(repo, env) == set()
    write_search_result(repo)
    assert stages_to_run(repo, env) == set()
    # ...which params.yaml can then list as a row of its own
    rows = {**params, "models": [*params["models"], "tuned/poto_alpha"]}
    (repo / "params.yaml").write_text(yaml.safe_dump(rows, sort_keys=False))
    assert {"train@tuned/poto_alpha-0", "evaluate@tuned/poto_alpha-1", "report"} <= stages_to_run(repo, env)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # every model started from the pretrained detector (train.overrides: model.weights)
    assert (repo / "models" / "pretrain" / "model_final.pth").is_file()
    # a training param re-runs train/evaluate/report of every model x fold, never prepare or pretrain
    params["train"]["overrides"] = {"solver.base_lr": 2.0e-4}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = stages_to_run(repo, env)
    assert "prepare" not in changed and "pretrain" not in changed
    expected = {f"{stage}@{m}-{k}" for stage in ("train",) for m in ("fasterrcnn", "ultradet") for k in (0, 1)}
    assert expected <= changed
