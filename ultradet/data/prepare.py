"""The prepare stage's logic: make ``data.out`` the dataset every later stage reads, validate it,
and write ``folds.json`` and ``stats.json`` (``pipelines/prepare.py`` is its command line).

``data.root: null`` simulates the embedded dataset into ``data.out`` (with its mimic sidecars,
:mod:`ultradet.mimic_sidecar`); otherwise ``data.out`` becomes a folder whose ``rawframes`` links
to the user's copy and whose JSONs (and mimic sidecars, if the copy has them) are copies of the
user's. Nothing half-written is left behind (outputs are built beside their target and renamed
into place).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ultradet import mimic_sidecar
from ultradet.data.coco_vid import load_videos
from ultradet.data.errors import DatasetNotFoundError
from ultradet.data.synthetic import generate_dataset
from ultradet.data.validate import validate_dataset

SPLITS = ("trainval", "test")


def _link_user_copy(root: Path, out: Path) -> None:
    """`out/rawframes` -> symlink to `root/rawframes`; `out/<split>.json` copied, and the split's
    mimic sidecar where the copy has one (a simulated dataset given as `data.root`); atomic."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        (tmp / "rawframes").symlink_to((root / "rawframes").resolve(), target_is_directory=True)
        for split in SPLITS:
            shutil.copy2(root / f"{split}.json", tmp / f"{split}.json")
            sidecar = mimic_sidecar.sidecar_path(root, split)
            if sidecar.is_file():
                shutil.copy2(sidecar, mimic_sidecar.sidecar_path(tmp, split))
        if out.is_symlink() or out.is_file():
            out.unlink()
        elif out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _folds_table(out: Path, num_folds: int) -> list[dict]:
    return [
        {"name": v.name, "patient_id": v.patient_id, "fold": v.fold, "num_frames": v.num_frames, "split": split}
        for split in SPLITS
        for v in load_videos(out, split, num_folds=num_folds)
    ]


def prepare(data_cfg: dict, *, meta_dir: str | Path) -> dict:
    """Build and validate `data_cfg["out"]`; write `meta_dir/folds.json` and `meta_dir/stats.json`.

    Raises:
        DatasetValidationError: the user's copy or the result is invalid.
        DatasetNotFoundError: `data_cfg["root"]` has no ``rawframes/`` folder.
    """
    out, num_folds, meta_dir = Path(data_cfg["out"]), int(data_cfg.get("num_folds", 4)), Path(meta_dir)
    for stale in ("folds.json", "stats.json"):  # never leave metadata of a previous dataset behind
        (meta_dir / stale).unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if data_cfg.get("root") is None:
        print(f"prepare: simulating the embedded dataset into {out}", flush=True)
        generate_dataset(out, num_folds=num_folds, **data_cfg.get("synthetic", {}))
    else:
        root = Path(data_cfg["root"]).expanduser()
        if not (root / "rawframes").is_dir():
            raise DatasetNotFoundError(f"data.root {root} has no rawframes/ folder")
        print(f"prepare: validating the user's copy {root}", flush=True)
        validate_dataset(root, splits=SPLITS, num_folds=num_folds)
        _link_user_copy(root, out)
    print(f"prepare: validating {out}", flush=True)
    stats = validate_dataset(out, splits=SPLITS, num_folds=num_folds)
    meta_dir.mkdir(parents=True, exist_ok=True)
    _write_json(meta_dir / "folds.json", _folds_table(out, num_folds))
    _write_json(meta_dir / "stats.json", stats)
    print(f"prepare: {stats['total']['videos']} videos, {stats['total']['frames']} frames, "
          f"{stats['total']['boxes']} boxes -> {out}, {meta_dir / 'folds.json'}, {meta_dir / 'stats.json'}")
    return stats
