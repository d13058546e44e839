import json
import shutil
from pathlib import Path

import pytest

from ultradet.data import DatasetValidationError
from ultradet.data.prepare import prepare


SYNTHETIC = {"num_videos": 4, "test_videos": 1, "min_frames": 5, "max_frames": 6, "size": 32, "seed": 0}


def _data(**data) -> dict:
    return {"num_folds": 4, **data}


def test_embedded_dataset(tmp_path, capsys):
    out = tmp_path / "data" / "cva_bus"
    stats = prepare(_data(root=None, out=str(out), synthetic=SYNTHETIC), meta_dir=tmp_path / "data")
    folds = json.loads((tmp_path / "data" / "folds.json").read_text())
    assert [r["split"] for r in folds] == ["trainval"] * 4 + ["test"]
    assert sorted(r["fold"] for r in folds[:4]) == [0, 1, 2, 3]
    assert all(r["patient_id"] == r["name"].split("/")[1] and 5 <= r["num_frames"] <= 6 for r in folds)
    assert json.loads((tmp_path / "data" / "stats.json").read_text()) == stats
    assert stats["total"]["videos"] == 5
    assert "prepare: 5 videos" in capsys.readouterr().out


def test_user_copy_is_linked_not_copied(tiny_dataset, tmp_path):
    out = tmp_path / "out"
    prepare(_data(root=str(tiny_dataset), out=str(out)), meta_dir=tmp_path / "meta")
    assert (out / "rawframes").is_symlink() and (out / "rawframes").resolve() == (tiny_dataset / "rawframes").resolve()
    assert (out / "trainval.json").read_bytes() == (tiny_dataset / "trainval.json").read_bytes()
    assert not (out / "trainval.json").is_symlink()
    # A simulated dataset given as data.root keeps its mimic sidecars (the evaluation's FP causes).
    assert (out / "trainval_mimics.json").read_bytes() == (tiny_dataset / "trainval_mimics.json").read_bytes()


def test_user_copy_without_mimic_sidecar_gets_none(tiny_dataset, tmp_path):
    root = tmp_path / "user"
    root.mkdir()
    (root / "rawframes").symlink_to(tiny_dataset / "rawframes")
    for split in ("trainval", "test"):
        shutil.copy2(tiny_dataset / f"{split}.json", root / f"{split}.json")
    out = tmp_path / "out"
    prepare(_data(root=str(root), out=str(out)), meta_dir=tmp_path / "meta")
    assert sorted(p.name for p in out.iterdir()) == ["rawframes", "test.json", "trainval.json"]


def test_invalid_user_copy_fails_readably_and_writes_nothing(tiny_dataset, tmp_path):
    root = Path(shutil.copytree(tiny_dataset, tmp_path / "user"))
    data = json.loads((root / "test.json").read_text())
    data["images"][0]["width"] = 10
    (root / "test.json").write_text(json.dumps(data))
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "folds.json").write_text("stale")
    with pytest.raises(DatasetValidationError, match=r"failed validation with(.|\n)*not square \(10x64\)"):
        prepare(_data(root=str(root), out=str(tmp_path / "out")), meta_dir=meta)
    assert not (tmp_path / "out").exists() and list(meta.iterdir()) == []
