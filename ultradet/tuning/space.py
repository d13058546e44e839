"""Search spaces as YAML files (``experiments/search/*.yaml``), turned into an Optuna
define-by-run function so that parameters can be conditional on earlier choices (POTO's alpha
only when the proposal generator is POTO, anchor ratios only for the RPN).

File format::

    experiment: ultradet            # experiments/<name>.yaml the trials start from
    metric: FP90                    # optional defaults for --metric / --mode
    mode: min
    params:                         # config keys, exactly as in ultradet.config
      model.proposal_generator.name: {choice: [rpn, poto]}
      model.poto.poto_alpha:
        uniform: [0.2, 1.0]
        when: {model.proposal_generator.name: poto}
      model.temporal.interval_pre_test: {randint: [4, 16]}   # inclusive bounds
      solver.base_lr: {loguniform: [1.0e-4, 1.0e-3]}

A ``when`` condition may only name parameters listed above it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ultradet.config import ConfigError, ExperimentConfig, load_config, overrides_to_dict, read_yaml
from ultradet.evaluation.names import fp_name

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
TOP_LEVEL_KEYS = ("experiment", "metric", "mode", "params")
DEFAULT_METRIC = fp_name(0.9)  # FP90: the false positives UltraDet sets out to suppress


@dataclass(frozen=True)
class Param:
    """One searched config key."""

    key: str
    kind: str
    args: tuple
    when: dict[str, Any] = field(default_factory=dict)

    def active(self, chosen: dict[str, Any]) -> bool:
        return all(chosen.get(k) == v for k, v in self.when.items())


@dataclass(frozen=True)
class SearchSpace:
    """A parsed search-space file."""

    path: Path
    experiment: str
    params: tuple[Param, ...]
    metric: str = DEFAULT_METRIC
    mode: str = "min"

    def suggest(self, trial) -> None:
        """Optuna define-by-run function: pass ``space.suggest`` to ``OptunaSearch(space=...)``
        (a bound method, so Tune can pickle the searcher into its experiment checkpoint).

        Categorical choices that are lists (anchor ratio sets) are offered to Optuna as JSON
        strings, since Optuna's categories must be scalars; :func:`decode` turns them back.
        """
        chosen: dict[str, Any] = {}
        for param in self.params:
            if param.active(chosen):
                chosen[param.key] = _suggest(trial, param)


def _suggest(trial, param: Param):
    if param.kind == "choice":
        options = [json.dumps(o) if isinstance(o, (list, dict)) else o for o in param.args]
        value = trial.suggest_categorical(param.key, options)
        return json.loads(value) if value not in param.args else value
    low, high = param.args
    if param.kind == "randint":
        return trial.suggest_int(param.key, int(low), int(high))
    return trial.suggest_float(param.key, float(low), float(high), log=param.kind == "loguniform")


def decode(config: dict[str, Any]) -> dict[str, Any]:
    """Undo the JSON encoding of list-valued choices in a trial's config."""
    out = {}
    for key, value in config.items():
        if isinstance(value, str) and value[:1] in "[{":
            value = json.loads(value)
        out[key] = value
    return out


def _parse_param(path: Path, key: str, spec: Any, earlier: set[str]) -> Param:
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: params.{key} must be a mapping like {{choice: [...]}}")
    kinds = [k for k in spec if k in DISTRIBUTIONS]
    extra = set(spec) - set(DISTRIBUTIONS) - {"when"}
    if len(kinds) != 1 or extra:
        raise ConfigError(f"{path}: params.{key} needs exactly one of {', '.join(DISTRIBUTIONS)} (and optional 'when')")
    kind, args = kinds[0], spec[kinds[0]]
    if not isinstance(args, list) or (kind != "choice" and len(args) != 2) or not args:
        raise ConfigError(f"{path}: params.{key}.{kind} must be a list ({'options' if kind == 'choice' else '[low, high]'})")
    if kind != "choice":
        _check_range(path, key, kind, args)
    when = spec.get("when") or {}
    unknown = set(when) - earlier
    if unknown:
        raise ConfigError(f"{path}: params.{key}.when names {sorted(unknown)}, which must be listed above it")
    return Param(key, kind, tuple(args), dict(when))


def _check_range(path: Path, key: str, kind: str, bounds: list) -> None:
    """``[low, high]`` of a ``uniform``, ``loguniform`` or ``randint`` parameter: numbers (integers
    for ``randint``) with ``low <= high``, and ``low > 0`` for ``loguniform`` (its log scale).
    Checked here so that a bad range fails before any trial, naming the file and the key, not as
    an Optuna error inside the searcher."""
    where = f"{path}: params.{key}.{kind}"
    number = int if kind == "randint" else (int, float)
    if not all(isinstance(b, number) and not isinstance(b, bool) for b in bounds):
        raise ConfigError(f"{where}: bounds must be {'integers' if kind == 'randint' else 'numbers'}, got {bounds!r}")
    low, high = bounds
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}; write [low, high]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: low {low} must be > 0 (a log scale); use uniform for ranges that include 0")


def load_search_space(path: str | Path, *, experiments_dir: str | Path = "experiments") -> SearchSpace:
    """Parse and validate a search-space file.

    Every key is checked against the config schema (by building the base experiment with the
    first option of each parameter), so a typo fails before any trial starts.

    Raises:
        ConfigError: malformed file, unknown top-level key (e.g. ``metirc``), a range with
            low above high (or a ``loguniform`` low <= 0, non-integer ``randint`` bounds),
            unknown experiment, unknown or ill-typed config key.
    """
    path = Path(path)
    data = read_yaml(path)
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
    for required in ("experiment", "params"):
        if required not in data:
            raise ConfigError(f"{path}: missing top-level key '{required}'")
    params: list[Param] = []
    for key, spec in (data["params"] or {}).items():
        params.append(_parse_param(path, key, spec, {p.key for p in params}))
    space = SearchSpace(path, data["experiment"], tuple(params), data.get("metric", DEFAULT_METRIC), data.get("mode", "min"))
    _check_keys(space, Path(experiments_dir))
    return space


def _check_keys(space: SearchSpace, experiments_dir: Path) -> ExperimentConfig:
    sample = {p.key: p.args[0] for p in space.params}
    base = experiments_dir / f"{space.experiment}.yaml"
    try:
        return load_config(base, overrides=overrides_to_dict(sample))
    except ConfigError as err:
        raise ConfigError(f"{space.path}: search space does not fit the config schema:\n{err}") from None
