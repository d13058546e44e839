"""The (model, fold) layout has one home in Python (ultradet.layout), and dvc.yaml agrees with it."""

from pathlib import Path

import yaml

from ultradet.layout import fold_dir, fold_run_name
from ultradet.report.inputs import fold_files

STAGES = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]


def _render(template: str, model: str, fold: int) -> str:
    return template.replace("${item.model}", model).replace("${item.fold}", str(fold))


def test_dvc_yaml_declares_the_same_fold_folders():
    (train_out,) = [next(iter(o)) if isinstance(o, dict) else o for o in STAGES["train"]["outs"]]
    assert Path(_render(train_out, "ultradet", 3)) == fold_dir("runs", "ultradet", 3) == Path("runs/ultradet/fold3")
    evaluate_outs = [Path(_render(next(iter(o)) if isinstance(o, dict) else o, "basicdet", 0)) for o in STAGES["evaluate"]["outs"]]
    assert {p.parent for p in evaluate_outs} == {fold_dir("results", "basicdet", 0)}


def test_report_reads_the_same_folders():
    assert fold_files("results", ["m"], [0, 2], "metrics.json") == {
        ("m", 0): fold_dir("results", "m", 0) / "metrics.json", ("m", 2): fold_dir("results", "m", 2) / "metrics.json"
    }
    assert fold_run_name("m", 2) == "m-fold2"
