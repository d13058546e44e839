"""What a finished search leaves behind: a top-k table, the best config as an experiment file,
and optionally that config applied to ``params.yaml``.

Best configs are outputs of a search, not experiment definitions: they go to
``experiments/tuned/<search>.yaml`` (:func:`best_config_path`), beside the definitions but not
among them, so the suite's checks of every ``experiments/*.yaml`` and the pipeline's stages
never see them; ``models: [tuned/<search>]`` in ``params.yaml`` makes one a report row."""

from __future__ import annotations

import math
import os
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


TUNED_DIR = "tuned"  # under the experiments folder


def best_config_path(experiments_dir: str | Path, search: str) -> Path:
    """Where a search's best config goes by default: ``<experiments_dir>/tuned/<search>.yaml``."""
    return Path(experiments_dir) / TUNED_DIR / f"{search}.yaml"


def experiment_name(path: str | Path, experiments_dir: str | Path) -> str:
    """The name ``load_experiment`` and ``models:`` know the experiment file ``path`` by: its
    path below ``experiments_dir`` without ``.yaml`` (``tuned/poto_alpha``), or its stem when it
    lies elsewhere."""
    path, experiments_dir = Path(path).resolve(), Path(experiments_dir).resolve()
    if experiments_dir in path.parents:
        return path.relative_to(experiments_dir).with_suffix("").as_posix()
    return path.stem


def write_best_experiment(
    space: SearchSpace, overrides: dict[str, Any], path: str | Path, *, experiments_dir: str | Path, metric_value: float
) -> Path:
    """Write an experiment file that starts from the search's base experiment
    (``<experiments_dir>/<space.experiment>.yaml``) and applies the best values;
    ``load_experiment(experiment_name(path, experiments_dir))`` builds it like any other
    experiment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = experiment_name(path, experiments_dir)
    base = Path(experiments_dir) / f"{space.experiment}.yaml"
    body = {
        "_base_": Path(os.path.relpath(base.resolve(), path.parent.resolve())).as_posix(),  # _base_ is relative to the file
        "name": name,
        "display_name": f"{name} (tuned)",
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
