"""What a finished search leaves behind: a top-k table, the best config as an experiment file,
and optionally that config applied to ``params.yaml``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ultradet.config import overrides_to_dict
from ultradet.tuning.space import SearchSpace, decode


def top_k(results: pd.DataFrame, space: SearchSpace, *, metric: str, mode: str, k: int) -> pd.DataFrame:
    """Best ``k`` trials by their last reported ``metric`` (NaN last).

    Args:
        results: ``ResultGrid.get_dataframe()`` (one row per trial, ``config/<key>`` columns).

    Returns:
        Columns: ``trial_id``, the searched keys, ``metric``, ``iterations`` (evaluations done).

    Raises:
        KeyError: no trial reported ``metric``.
    """
    if metric not in results:
        raise KeyError(f"no trial reported '{metric}'; reported: {sorted(c for c in results if not c.startswith('config/'))}")
    keys = [p.key for p in space.params]
    table = pd.DataFrame({"trial_id": results["trial_id"]})
    for key in keys:
        column = results.get(f"config/{key}")
        table[key] = column.map(lambda v: decode({key: v})[key] if isinstance(v, str) else v) if column is not None else None
    table[metric] = results[metric]
    table["iterations"] = results["training_iteration"]
    table = table.sort_values(metric, ascending=mode == "min", na_position="last", kind="stable")
    return table.head(k).reset_index(drop=True)


def write_tables(table: pd.DataFrame, out_dir: str | Path) -> tuple[Path, Path]:
    """Save ``top_k.csv`` and ``top_k.md`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "top_k.csv", out_dir / "top_k.md"
    table.to_csv(csv_path, index=False)
    md_path.write_text(table.to_markdown(index=False, floatfmt=".4g") + "\n")
    return csv_path, md_path


def best_overrides(table: pd.DataFrame, space: SearchSpace) -> dict[str, Any]:
    """The searched values of the top row, leaving out parameters inactive in that trial."""
    best = table.iloc[0]
    out = {}
    for param in space.params:
        value = best[param.key]
        if isinstance(value, float) and math.isnan(value):
            continue
        out[param.key] = value.item() if hasattr(value, "item") else value
    return out


def write_best_experiment(space: SearchSpace, overrides: dict[str, Any], path: str | Path, *, metric_value: float) -> Path:
    """Write an experiment file that starts from the search's base experiment and applies the
    best values; ``load_experiment(<stem>)`` builds it like any other experiment."""
    path = Path(path)
    body = {
        "_base_": f"{space.experiment}.yaml",
        "name": path.stem,
        "display_name": f"{path.stem} (tuned)",
        **overrides_to_dict(overrides),
    }
    header = (
        f"# Written by pipelines/tune.py from {space.path.name}: best trial, "
        f"{space.metric} = {metric_value:.4g} ({space.mode}).\n"
    )
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))
    return path


def apply_to_params(params_path: str | Path, overrides: dict[str, Any]) -> None:
    """Set ``train.overrides`` in ``params.yaml`` to ``overrides``, keeping its comments (ruamel)."""
    from ruamel.yaml import YAML

    ryaml = YAML()
    params_path = Path(params_path)
    data = ryaml.load(params_path.read_text())
    data.setdefault("train", {})["overrides"] = dict(overrides)
    with params_path.open("w") as f:
        ryaml.dump(data, f)
