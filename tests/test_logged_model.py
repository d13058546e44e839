"""ultradet.experiment_log.model: a fold's detector logged as an MLflow model into a real sqlite
store, loaded back by ``runs:/`` and ``models:/`` URIs (the latter after registering it, as a
user would), gives the run folder's detections."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest

from ultradet import experiment_log
from ultradet.config import load_config
from ultradet.data import load_videos
from ultradet.data.dataset import read_rgb
from ultradet.engine.launch import load_trained_model, predict_videos
from ultradet.experiment_log.model import ModelLoadError, detections_table, load_logged_detector, log_detector

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


@pytest.fixture(scope="module")
def logged(make_trained_run, tmp_path_factory):
    """(store URI, run id, run folder): a fold run whose detector is logged."""
    run_dir = make_trained_run("ultradet")
    store = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    tracker = experiment_log.PipelineTracker(store, "logged-model")
    with tracker.fold_run(model="ultradet", fold=1, stage="train") as run:
        log_detector(tracker.client, run.run_id, run_dir, fold=1)
    return store, run.run_id, run_dir


def clip(tiny_dataset) -> list[np.ndarray]:
    video = load_videos(tiny_dataset, "trainval", num_folds=4)[0]
    return [read_rgb(frame) for frame in video.frames]


def test_uri_loaded_detector_detects_as_the_run_folder(logged, tiny_dataset, monkeypatch):
    store, run_id, run_dir = logged
    cfg = load_config(run_dir / "config.yaml")
    frames = clip(tiny_dataset)
    expected = detections_table(cfg, load_trained_model(cfg, run_dir / "model_final.pth"), frames)
    assert len(expected) > 0 and expected["frame"].nunique() == len(frames)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # how a user registers: the fluent API
    version = mlflow.register_model(f"runs:/{run_id}/model", "ultradet-fold1").version
    for uri in (f"runs:/{run_id}/model", f"models:/ultradet-fold1/{version}"):
        loaded = load_logged_detector(uri, tracking_uri=store, device="cpu")
        assert loaded.run_id == run_id and loaded.cfg == cfg
        pd.testing.assert_frame_equal(detections_table(loaded.cfg, loaded.model, frames), expected)

    # MLflow's own API, with the signature's input contract and the threshold param.
    pyfunc = mlflow.pyfunc.load_model(f"models:/ultradet-fold1/{version}")
    assert pyfunc.metadata.metadata["input"]["fixed_area_test"] == cfg.input.fixed_area_test
    above = pyfunc.predict(np.stack(frames), params={"score_thresh": 0.45})
    pd.testing.assert_frame_equal(above, expected[expected["score"] >= 0.45].reset_index(drop=True))


def test_detections_table_is_the_evaluation_path(logged, tiny_dataset):
    """The frames of a dataset video, as a clip array, give the evaluation's predictions."""
    _, _, run_dir = logged
    cfg = load_config(run_dir / "config.yaml")
    model = load_trained_model(cfg, run_dir / "model_final.pth")
    video = load_videos(tiny_dataset, "trainval", num_folds=4)[0]
    results, _ = predict_videos(cfg, model, [video], warmup_frames=0, progress=False)
    table = detections_table(cfg, model, clip(tiny_dataset))
    image_of = {f.frame_id: f.image_id for f in video.frames}
    assert [r["image_id"] for r in results] == [image_of[i] for i in table["frame"]]
    xywh = np.array([r["bbox"] for r in results])
    boxes = table[["x1", "y1", "x2", "y2"]].to_numpy()
    np.testing.assert_allclose(xywh, np.c_[boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], atol=1e-3)  # COCO rounds to 3 decimals
    np.testing.assert_array_equal([r["score"] for r in results], table["score"].to_numpy())


def test_unknown_uri_is_a_one_line_user_error(logged):
    store, _, _ = logged
    with pytest.raises(ModelLoadError, match=r"runs:/0123456789abcdef/model: not found in the MLflow store"):
        load_logged_detector("runs:/0123456789abcdef/model", tracking_uri=store)


def test_predict_by_uri_takes_the_threshold_from_the_runs_metrics(logged, tiny_dataset, tmp_path):
    """``ultradet predict runs:/<id>/model``: the run folder's detections, thresholded at the
    thr90 the evaluate stage logged into the fold's run."""
    from ultradet.predict.cli import run

    store, run_id, run_dir = logged
    experiment_log.TrackedRun(mlflow.MlflowClient(store), run_id).log_eval_metrics({"thr90": 0.47})
    folder = load_videos(tiny_dataset, "trainval", num_folds=4)[0].frames[0].path.parent
    common = ["--out", "OUT", "--no-progress", "--tracking-uri", store]
    for model, out in ((f"runs:/{run_id}/model", tmp_path / "uri"), (str(run_dir), tmp_path / "folder")):
        assert run([model, str(folder), *[str(out) if a == "OUT" else a for a in common], "--score-thresh", "0"]) == 0
    assert (tmp_path / "uri" / "detections.json").read_text() == (tmp_path / "folder" / "detections.json").read_text()
    assert run([f"runs:/{run_id}/model", str(folder), *[str(tmp_path / "thr") if a == "OUT" else a for a in common]]) == 0
    summary = json.loads((tmp_path / "thr" / "predict.json").read_text())
    assert summary["score_thresh"] == 0.47 and summary["score_thresh_source"] == f"metric thr90 of MLflow run {run_id} in {store}"
