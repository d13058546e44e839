"""Every experiment file runs through the real stage entry points for a few iterations (a "fast
dev run"): pipelines/train.py, then pipelines/evaluate.py, on the tiny dataset."""

import csv
import json
import math
import sys

import mlflow
import pandas as pd
import pytest
import yaml
from pipeline_project import ROOT, pipeline_env, run

from ultradet.data import load_videos, split_by_folds

EXPERIMENTS = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))  # a search's best configs are in tuned/


def test_every_model_experiment_is_covered():
    assert {"fasterrcnn", "basicdet", "ultradet", "basicdet_poto", "ultradet_poto"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run(experiment, tmp_path, tiny_dataset):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"out": str(tiny_dataset), "num_folds": 4},
        "train": {"profile": str(ROOT / "experiments/profiles/smoke.yaml"), "overrides": {}},
        "eval": {"warmup_frames": 1},
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "fast-dev-run"},
    }))
    env = pipeline_env(tmp_path)
    common = ["--params", str(params), "--model", experiment, "--fold", "1"]
    run([sys.executable, str(ROOT / "pipelines/train.py"), *common, "--experiments-dir", str(ROOT / "experiments"),
         "--out", str(tmp_path / "runs" / experiment / "fold1")], tmp_path, env)
    run_dir = tmp_path / "runs" / experiment / "fold1"
    assert (run_dir / "model_final.pth").is_file()
    assert len((run_dir / "losses.csv").read_text().splitlines()) == 1 + 2  # header + smoke max_iter
    # NTCA models say which optical flow they ran (the smoke profile gives no FlowNetS weights).
    run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_info = client.get_run(run_id)
    assert run_info.data.tags.get("ultradet.flow") == ("farneback" if experiment.startswith("ultradet") else None)
    # The fold's run holds its detector as the MLflow model runs:/<run_id>/model.
    logged = client.search_logged_models([run_info.info.experiment_id], filter_string="name = 'model'")
    assert [(m.source_run_id, m.tags.get("ultradet.model")) for m in logged] == [(run_id, experiment)]
    run([sys.executable, str(ROOT / "pipelines/evaluate.py"), *common, "--runs", str(tmp_path / "runs"),
         "--out", str(tmp_path / "results")], tmp_path, env)
    metrics = json.loads((tmp_path / "results" / "metrics.json").read_text())
    assert metrics["num_videos"] == 2  # the tiny dataset has 2 trainval videos per fold
    assert 0.0 <= metrics["R16"] <= 1.0 and metrics["FPS"] > 0
    for key in ("AP50", "Pr80", "FP80"):
        assert metrics[key] is None or math.isfinite(metrics[key])
    # per_video.csv: one row per test video with the video's patient, logged to the fold's run
    with (tmp_path / "results" / "per_video.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    _, test_videos = split_by_folds(load_videos(tiny_dataset, num_folds=4), [1])
    assert {(int(r["video_id"]), r["patient_id"]) for r in rows} == {(v.video_id, v.patient_id) for v in test_videos}
    assert "per_video.csv" in {a.path for a in client.list_artifacts(run_id)}
    # False positives by cause, the embedded dataset's mimics told apart (its sidecar is in data.out).
    causes = pd.read_csv(tmp_path / "results" / "fp_causes.csv")
    assert list(causes["cause"]) == ["localisation", "mimic:duct", "mimic:shadow", "background"] * 2
    if metrics["FP80"] is not None:
        assert causes[causes.recall == 0.8].fp_per_minute.sum() == pytest.approx(metrics["FP80"])


def test_make_table_runs_every_experiment_with_the_published_rows_in_the_papers_order():
    """`make table` (README's command for the full table) names each experiment file once, and the
    report, which keeps the order of `models:`, then lists the published rows as the paper does."""
    from ultradet.report.published import published_summary

    line = next(x for x in (ROOT / "Makefile").read_text().splitlines() if x.startswith("TABLE_MODELS :="))
    table = line.split(":=")[1].strip().split(",")
    assert sorted(table) == EXPERIMENTS  # every experiment, none twice, no missing file
    names = [yaml.safe_load((ROOT / "experiments" / f"{m}.yaml").read_text())["display_name"] for m in table]
    published = list(dict.fromkeys(published_summary()["display_name"]))
    assert [n for n in names if n in published] == published
