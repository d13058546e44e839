import importlib.util
import json
import shutil
from pathlib import Path

import yaml

from ultradet.errors import run_cli

_SPEC = importlib.util.spec_from_file_location("prepare_stage", Path(__file__).parents[2] / "pipelines" / "prepare.py")
prepare_stage = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(prepare_stage)

SYNTHETIC = {"num_videos": 4, "test_videos": 1, "min_frames": 5, "max_frames": 6, "size": 32, "seed": 0}


def _params(tmp_path: Path, **data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": {"num_folds": 4, **data}, "train": {"ignored": True}}))
    return str(path)


def test_embedded_dataset(tmp_path, capsys):
    out = tmp_path / "data" / "cva_bus"
    params = _params(tmp_path, root=None, out=str(out), synthetic=SYNTHETIC)
    assert prepare_stage.main(["--params", params, "--meta-dir", str(tmp_path / "data")]) == 0
    folds = json.loads((tmp_path / "data" / "folds.json").read_text())
    assert [r["split"] for r in folds] == ["trainval"] * 4 + ["test"]
    assert sorted(r["fold"] for r in folds[:4]) == [0, 1, 2, 3]
    assert all(r["patient_id"] == r["name"].split("/")[1] and 5 <= r["num_frames"] <= 6 for r in folds)
    stats = json.loads((tmp_path / "data" / "stats.json").read_text())
    assert stats["total"]["videos"] == 5
    assert "prepare: 5 videos" in capsys.readouterr().out


def test_user_copy_is_linked_not_copied(tiny_dataset, tmp_path):
    out = tmp_path / "out"
    params = _params(tmp_path, root=str(tiny_dataset), out=str(out))
    assert prepare_stage.main(["--params", params, "--meta-dir", str(tmp_path / "meta")]) == 0
    assert (out / "rawframes").is_symlink() and (out / "rawframes").resolve() == (tiny_dataset / "rawframes").resolve()
    assert (out / "trainval.json").read_bytes() == (tiny_dataset / "trainval.json").read_bytes()
    assert not (out / "trainval.json").is_symlink()


def test_invalid_user_copy_fails_readably_and_writes_nothing(tiny_dataset, tmp_path, capsys):
    root = Path(shutil.copytree(tiny_dataset, tmp_path / "user"))
    data = json.loads((root / "test.json").read_text())
    data["images"][0]["width"] = 10
    (root / "test.json").write_text(json.dumps(data))
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "folds.json").write_text("stale")
    params = _params(tmp_path, root=str(root), out=str(tmp_path / "out"))
    assert run_cli(lambda: prepare_stage.main(["--params", params, "--meta-dir", str(meta)]), "prepare") == 1
    err = capsys.readouterr().err
    assert "failed validation with" in err and "not square (10x64)" in err
    assert not (tmp_path / "out").exists() and list(meta.iterdir()) == []


def test_params_without_data_section(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train: {}\n")
    assert prepare_stage.main(["--params", str(path)]) == 2
