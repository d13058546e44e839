"""DVC stage `prepare`: make `data.out` the dataset every later stage reads, validate it, and write
`data/folds.json` and `data/stats.json`.

    python pipelines/prepare.py --params params.yaml

Reads only the `data:` section. `data.root: null` simulates the embedded dataset into `data.out`;
otherwise `data.out` becomes a folder whose `rawframes` links to the user's copy and whose JSONs
are copies of the user's. Exits 1 with a readable list of problems if validation fails; nothing
half-written is left behind (outputs are built beside their target and renamed into place).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

from ultradet.data import DatasetNotFoundError, generate_dataset, load_videos, validate_dataset
from ultradet.errors import run_cli

SPLITS = ("trainval", "test")


def _link_user_copy(root: Path, out: Path) -> None:
    """`out/rawframes` -> symlink to `root/rawframes`; `out/<split>.json` copied; atomic."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        (tmp / "rawframes").symlink_to((root / "rawframes").resolve(), target_is_directory=True)
        for split in SPLITS:
            shutil.copy2(root / f"{split}.json", tmp / f"{split}.json")
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


def prepare(data_cfg: dict, *, meta_dir: Path) -> dict:
    """Build and validate `data_cfg["out"]`; write `meta_dir/folds.json` and `meta_dir/stats.json`.

    Raises:
        DatasetValidationError: the user's copy or the result is invalid.
        FileNotFoundError: `data_cfg["root"]` does not exist.
    """
    out, num_folds = Path(data_cfg["out"]), int(data_cfg.get("num_folds", 4))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml", help="pipeline parameters (reads the data: section)")
    parser.add_argument("--meta-dir", default="data", help="where folds.json and stats.json go")
    args = parser.parse_args(argv)
    params = yaml.safe_load(Path(args.params).read_text()) or {}
    if not isinstance(params.get("data"), dict):
        print(f"prepare: {args.params} has no 'data:' section", file=sys.stderr)
        return 2
    prepare(params["data"], meta_dir=Path(args.meta_dir))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "prepare"))
