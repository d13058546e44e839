"""DVC stage `prepare`: make `data.out` the dataset every later stage reads, validate it, and write
`data/folds.json` and `data/stats.json`.

    python pipelines/prepare.py --params params.yaml

Reads only the `data:` section and calls `ultradet.data.prepare.prepare` (what it builds and
checks). Exits 1 with a readable list of problems if validation fails.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ultradet.data.prepare import prepare
from ultradet.errors import run_cli


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
