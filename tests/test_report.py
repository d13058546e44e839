"""The report from fake per-fold files: statistics, grouping, bolding, errors, files, plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from ultradet.config import dump_config, load_config
from ultradet.errors import run_cli
from ultradet.report import METRIC_KEYS, ModelSpec, ReportInputError, model_specs, trained_model_specs, write_report
from ultradet.report.published import published_summary
from ultradet.report.table import format_table

FOLDS = [0, 1, 2]
# Given in this order; grouping must put the one-stage model first.
MODELS = {
    "frcnn": ("Faster R-CNN", "Faster R-CNN-based", "Image"),
    "defcn": ("DeFCN", "One-stage", "Image"),
}


def fake_metrics(rng: np.random.Generator) -> dict:
    metrics = {k: float(rng.uniform(0.5, 0.99)) for k in METRIC_KEYS}
    metrics.update({k: float(rng.uniform(1, 40)) for k in ("FP70", "FP80", "FP90", "FPS")})
    return {**metrics, "thr70": None, "num_videos": 4}


def write_fold(root: Path, model: str, fold: int, rng: np.random.Generator) -> dict:
    results = root / "results" / model / f"fold{fold}"
    results.mkdir(parents=True)
    metrics = fake_metrics(rng)
    (results / "metrics.json").write_text(json.dumps(metrics))
    recall = np.sort(rng.uniform(0, 0.95, 30))
    pd.DataFrame({"recall": recall, "precision": np.linspace(1, 0.4, 30), "score": 0.5}).to_csv(results / "pr_curve.csv", index=False)
    grid = np.arange(1, 20) * 0.05
    pd.DataFrame({"recall": grid, "fp_per_minute": grid * 20, "threshold": 0.5}).to_csv(results / "fp_curve.csv", index=False)
    runs = root / "runs" / model / f"fold{fold}"
    runs.mkdir(parents=True)
    it = np.arange(1, 201)
    pd.DataFrame({"iteration": it, "lr": 1e-3, "loss_total": 3 / np.sqrt(it), "loss_cls": 2 / np.sqrt(it), "loss_box_reg": 1 / np.sqrt(it)}).to_csv(runs / "losses.csv", index=False)
    dump_config(load_config(root / "experiments" / f"{model}.yaml"), runs / "config.yaml")
    return metrics


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("report")
    (root / "experiments").mkdir()
    for name, (display, group, kind) in MODELS.items():
        (root / "experiments" / f"{name}.yaml").write_text(f"name: {name}\ndisplay_name: {display}\ngroup: {group}\ntype: {kind}\n")
    rng = np.random.default_rng(0)
    metrics = {(m, k): write_fold(root, m, k, rng) for m in MODELS for k in FOLDS}
    return root, metrics


@pytest.fixture(scope="module")
def report(project) -> tuple[Path, dict, dict]:
    root, metrics = project
    specs = model_specs(list(MODELS), root / "experiments")
    written = write_report(specs, FOLDS, results_dir=root / "results", runs_dir=root / "runs", out_dir=root / "reports", ddof=1)
    return root, metrics, written


def fold_values(metrics: dict, model: str, key: str) -> np.ndarray:
    scale = 1 if key.startswith("FP") else 100
    return np.array([metrics[(model, k)][key] for k in FOLDS]) * scale


def test_csv_holds_mean_sd_se_n(report):
    root, metrics, written = report
    csv = pd.read_csv(written["paper_table.csv"])
    assert len(csv) == len(MODELS) * len(METRIC_KEYS)
    for row in csv.itertuples():
        x = fold_values(metrics, row.model, row.metric)
        assert row.mean == pytest.approx(np.mean(x))
        assert row.sd == pytest.approx(np.std(x, ddof=1))
        assert row.se == pytest.approx(row.sd / math.sqrt(3))
        assert row.n == 3 and row.ddof == 1
        # 95 % t interval of the mean, t_{0.975, 2} = 4.302653 (tables)
        assert row.ci_low == pytest.approx(np.mean(x) - 4.302653 * row.se, rel=1e-6)
        assert row.ci_high == pytest.approx(np.mean(x) + 4.302653 * row.se, rel=1e-6)


def test_every_cell_with_its_interval_on_request(project, tmp_path):
    root, metrics = project
    specs = model_specs(list(MODELS), root / "experiments")
    plain = write_report(specs, FOLDS, results_dir=root / "results", runs_dir=root / "runs", out_dir=tmp_path / "a")
    assert "intervals" not in plain["paper_table.md"].read_text()
    written = write_report(
        specs, FOLDS, results_dir=root / "results", runs_dir=root / "runs", out_dir=tmp_path / "b", cell_intervals=True
    )
    section = written["paper_table.md"].read_text().split("## Measured, 95% intervals")[1].split("## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "DeFCN" in line]
    x = fold_values(metrics, "defcn", "AP50")
    half = 4.302653 * np.std(x, ddof=1) / math.sqrt(3)
    assert f"{np.mean(x):.1f} [{np.mean(x) - half:.1f}, {np.mean(x) + half:.1f}]" in rows[0]
    assert "n=3 folds" in section
    summary = json.loads(written["summary.json"].read_text())
    assert summary["models"]["defcn"]["AP50"]["ci_high"] == pytest.approx(np.mean(x) + half, rel=1e-6)


def test_markdown_numbers_order_and_bold(report):
    root, metrics, written = report
    text = written["paper_table.md"].read_text()
    measured = text.split("## Published")[0]
    lines = [line for line in measured.splitlines() if line.startswith("| ")]
    assert "One-stage" in lines[1] and "DeFCN" in lines[1] and "Faster R-CNN-based" in lines[2]
    x = fold_values(metrics, "defcn", "Pr80")
    assert f"{np.mean(x):.1f} ± {np.std(x, ddof=1):.1f}" in lines[1]
    for key, lower_better in (("Pr80", False), ("FP90", True)):
        means = {m: np.mean(fold_values(metrics, m, key)) for m in MODELS}
        best = (min if lower_better else max)(means, key=means.get)
        row = lines[1] if best == "defcn" else lines[2]
        assert f"**{means[best]:.1f} ± " in row
    assert "ddof=1" in measured and "n=3 folds" in measured and "folds 1-3 only" in measured


def test_published_table_included_and_bolded_like_the_paper(report):
    root, _, written = report
    published = written["published_table.md"].read_text()
    assert published in written["paper_table.md"].read_text()
    assert "## Published (CVA-BUS, MICCAI 2023)" in published
    ultradet = next(line for line in published.splitlines() if "| UltraDet" in line)
    assert "**95.7 ± 1.2**" in ultradet and "**1.9 ± 0.4**" in ultradet and "**91.6 ± 1.6**" in ultradet
    assert "**91.6 ± 1.9**" in next(line for line in published.splitlines() if "CVA-Net" in line)  # tie
    assert "**59.8**" in next(line for line in published.splitlines() if "YOLOX" in line)  # FPS: no sd


def test_each_measured_row_stands_beside_its_published_row_and_added_rows_are_marked(report):
    root, metrics, written = report
    text = written["paper_table.md"].read_text()
    beside = text.split("## Measured beside published")[1].split("## Published")[0]
    rows = [line for line in beside.splitlines() if line.startswith("| ")][1:]
    # One-stage first: DeFCN measured, then DeFCN published; "Faster R-CNN" is not a published name.
    assert [row.split("|")[2].strip() for row in rows] == ["DeFCN", "DeFCN (published)", "Faster R-CNN †"]
    assert f"{np.mean(fold_values(metrics, 'defcn', 'AP50')):.1f} ± " in rows[0]
    cells = [cell.strip() for cell in rows[1].split("|")]
    assert "86.4 ± 1.3" in cells and "51.2" in cells  # AP50 and FPS as published
    assert "**" not in beside  # different sources: nothing bolded
    measured = text.split("## Measured beside published")[0]
    assert "| Faster R-CNN † |" in measured and "† not in the published table" in measured
    assert "Faster R-CNN $^\\dagger$" in written["paper_table.tex"].read_text()


def test_published_data_is_numeric():
    summary = published_summary()
    assert summary["mean"].dtype == float and len(summary) == 16 * 7
    row = summary[(summary["model"] == "UltraDet") & (summary["metric"] == "FP90")].iloc[0]
    assert (row["mean"], row["sd"], row["group"]) == (5.7, 1.6, "Faster R-CNN-based")


def test_latex_and_summary_json(report):
    root, metrics, written = report
    tex = written["paper_table.tex"].read_text()
    assert "\\begin{tabular}" in tex and "$\\pm$" in tex and "\\textbf{" in tex and "ddof=1" in tex
    summary = json.loads(written["summary.json"].read_text())
    assert summary["ddof"] == 1 and summary["folds"] == FOLDS
    stats = summary["models"]["frcnn"]["AP50"]
    assert stats["mean"] == pytest.approx(np.mean(fold_values(metrics, "frcnn", "AP50"))) and stats["n"] == 3


def test_plots_are_nonempty_pngs(report):
    _, _, written = report
    for name in ("plots/pr_curves.png", "plots/fp_curves.png", "plots/losses.png"):
        image = matplotlib.image.imread(written[name])
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # something is drawn


def test_population_sd_with_ddof0(project, tmp_path):
    root, metrics = project
    specs = model_specs(["frcnn"], root / "experiments")
    with pytest.warns(UserWarning, match="losses.csv"):
        written = write_report(specs, FOLDS, results_dir=root / "results", runs_dir=tmp_path, out_dir=tmp_path / "out", ddof=0)
    csv = pd.read_csv(written["paper_table.csv"]).set_index("metric")
    assert csv.loc["FP80", "sd"] == pytest.approx(np.std(fold_values(metrics, "frcnn", "FP80"), ddof=0))
    assert "plots/losses.png" not in written  # no training logs: warned, not fatal


def test_missing_fold_names_every_missing_file(project, tmp_path):
    root, _ = project
    specs = [ModelSpec("frcnn", "Faster R-CNN", "Faster R-CNN-based", "Image"), ModelSpec("ghost", "G", "One-stage", "Video")]
    with pytest.raises(ReportInputError) as err:
        write_report(specs, [0, 7], results_dir=root / "results", out_dir=tmp_path)
    message = str(err.value)
    for path in ("frcnn/fold7/metrics.json", "ghost/fold0/metrics.json", "ghost/fold7/metrics.json"):
        assert str(root / "results" / path) in message
    assert "frcnn/fold0" not in message


def test_missing_metric_key_is_named(project, tmp_path):
    root, _ = project
    broken = tmp_path / "results" / "frcnn" / "fold0"
    broken.mkdir(parents=True)
    (broken / "metrics.json").write_text(json.dumps({"AP50": 0.5}))
    with pytest.raises(ReportInputError, match=r"fold0/metrics.json: missing metric\(s\) AP75"):
        write_report([ModelSpec("frcnn", "F", "One-stage", "Image")], [0], results_dir=tmp_path / "results", out_dir=tmp_path / "o")


def test_format_table_rejects_unknown_style():
    with pytest.raises(ValueError, match="style"):
        format_table(published_summary(), style="html")


def load_report_stage():
    import importlib.util

    spec = importlib.util.spec_from_file_location("report_stage", Path(__file__).parents[1] / "pipelines" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")  # MLflow's own sqlalchemy use
def test_cli_reads_params_and_logs_to_mlflow(project, tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    root, _ = project
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = tmp_path / "params.yaml"
    params.write_text(
        f"models: [frcnn, defcn]\nfolds: [0, 1, 2]\nreport: {{ddof: 0, out: {tmp_path / 'out'}}}\n"
        "tracking: {uri: http://127.0.0.1:9, experiment: report-test}\n"
    )
    stage = load_report_stage()
    argv = ["--params", str(params), "--results", str(root / "results"), "--runs", str(root / "runs")]
    assert stage.main(argv + ["--mlflow"]) == 0
    assert "ddof=0" in (tmp_path / "out" / "paper_table.md").read_text()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("report-test")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`ultradet.role` = 'report'")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"paper_table.md", "summary.json", "plots"}
    # Each model's parent run carries its config and the table's numbers, comparable side by side.
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["models"]
    parents = client.search_runs([experiment.experiment_id], "tags.`ultradet.role` = 'parent'")
    assert sorted(p.data.tags["ultradet.model"] for p in parents) == ["defcn", "frcnn"]
    for parent in parents:
        model = parent.data.tags["ultradet.model"]
        assert parent.data.params["name"] == model and parent.data.params["display_name"] == MODELS[model][0]
        for metric in METRIC_KEYS:
            stats = summary[model][metric]
            assert parent.data.metrics[metric] == pytest.approx(stats["mean"])
            assert parent.data.metrics[f"{metric}_sd"] == pytest.approx(stats["sd"])
            assert parent.data.metrics[f"{metric}_se"] == pytest.approx(stats["se"])
            assert parent.data.metrics[f"{metric}_ci_high"] == pytest.approx(stats["ci_high"])
            assert parent.data.metrics[f"{metric}_n"] == 3
    # A missing fold is a clean failure (exit code 1 and a message), not a traceback.
    params.write_text(params.read_text().replace("folds: [0, 1, 2]", "folds: [0, 5]"))
    capsys.readouterr()
    assert run_cli(lambda: stage.main(argv), "report") == 1
    assert capsys.readouterr().err.startswith("report: 2 report input file(s) missing")


def test_rows_are_named_by_the_configs_the_models_were_trained_with(project, tmp_path):
    # The report stage reads the trained configs (runs/, a DVC output), not experiments/: an
    # experiment file that is no row (a search's best config) cannot make the report stale.
    root, _ = project
    assert trained_model_specs(list(MODELS), root / "runs", FOLDS[0]) == model_specs(list(MODELS), root / "experiments")
    with pytest.raises(ReportInputError, match=r"1 report input file\(s\) missing.*\n  .*runs/nope/fold0/config.yaml"):
        trained_model_specs(["frcnn", "nope"], root / "runs", 0)


def test_flow_estimator_of_ntca_models_is_noted_from_the_run_configs(tmp_path):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "ultra.yaml").write_text("name: ultra\ndisplay_name: Ultra\n")
    rng = np.random.default_rng(1)
    for k in FOLDS:
        write_fold(tmp_path, "ultra", k, rng)
        flow = {"model.flow.weights": "/models/flownet.ckpt"} if k < 2 else {}
        dump_config(load_config(overrides=flow), tmp_path / "runs" / "ultra" / f"fold{k}" / "config.yaml")
    written = write_report(model_specs(["ultra"], tmp_path / "experiments"), FOLDS, results_dir=tmp_path / "results",
                           runs_dir=tmp_path / "runs", out_dir=tmp_path / "reports")
    text = written["paper_table.md"].read_text()
    assert "Optical flow of NTCA (the original: learned FlowNetS): Ultra: flownets (flownet.ckpt) / farneback." in text


def test_report_states_a_bounded_lookahead(project, tmp_path):
    root, _ = project
    specs = model_specs(list(MODELS), root / "experiments")
    name = specs[0].name
    results = tmp_path / "results"
    for model in MODELS:
        for fold in FOLDS:
            src = root / "results" / model / f"fold{fold}"
            dst = results / model / f"fold{fold}"
            dst.mkdir(parents=True)
            for file in ("metrics.json", "pr_curve.csv", "fp_curve.csv"):
                (dst / file).write_text((src / file).read_text())
    causal = (tmp_path / "causal").joinpath
    write_report(specs, FOLDS, results_dir=results, runs_dir=root / "runs", out_dir=causal())
    assert "lookahead" not in causal("paper_table.md").read_text()
    metrics_path = results / name / f"fold{FOLDS[-1]}" / "metrics.json"
    metrics_path.write_text(json.dumps({**json.loads(metrics_path.read_text()), "delay_frames": 3}))
    written = write_report(specs, FOLDS, results_dir=results, runs_dir=root / "runs", out_dir=tmp_path / "delayed")
    assert f"{specs[0].display_name}: bounded lookahead, each output emitted 3 frames late" in written["paper_table.md"].read_text()
    assert "boxes per frame" not in written["paper_table.md"].read_text()  # the fixture's models emit <= 16
    # A model that emits more than 16 boxes in a frame (RetinaNet: up to 100) is named with what R@16 counts.
    metrics_path.write_text(json.dumps({**json.loads(metrics_path.read_text()), "max_detections_per_frame": 100}))
    many = write_report(specs, FOLDS, results_dir=results, runs_dir=root / "runs", out_dir=tmp_path / "many")
    text = many["paper_table.md"].read_text()
    assert f"{specs[0].display_name}: up to 100 boxes per frame, as the original; AP, Pr and FP count all of them, R@16 the 16 best" in text
