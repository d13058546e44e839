"""The search as a whole: resolve paths, connect Ray, open the parent MLflow run, fit, and write
the top-k table and the best experiment file. ``pipelines/tune.py`` is its command line."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ultradet.config import ConfigError, load_experiment
from ultradet.tuning import results as res
from ultradet.tuning.search import SearchOptions, build_tuner, restore_tuner
from ultradet.tuning.space import load_search_space
from ultradet.tuning.resources import split_trial_resources
from ultradet.tuning.setup import TrialSetup


@dataclass(frozen=True)
class SearchRequest:
    """One search, as asked for on the command line (``pipelines/tune.py --help`` documents each
    field; ``None`` = the default named there)."""

    search_space: Path
    params: Path = Path("params.yaml")
    num_samples: int = 8
    max_concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    workers_per_trial: int = 1
    address: str | None = None
    metric: str | None = None
    mode: str | None = None
    seed: int = 0
    fold: int = 0
    val_fraction: float = 0.25
    max_iter: int | None = None
    eval_period: int | None = None
    grace_period: int = 1
    max_failures: int = 2
    top_k: int = 5
    name: str | None = None
    storage_path: Path = Path("tune_results")
    resume: Path | None = None
    output: Path | None = None
    apply: bool = False
    experiments_dir: Path = Path("experiments")

    def __post_init__(self):
        """Refuse counts that cannot make a search, before Ray starts or MLflow is touched.

        Raises:
            ConfigError: ``num_samples`` or ``max_concurrent`` < 1, or resources that do not
                split over ``workers_per_trial`` (:func:`split_trial_resources`).
        """
        for option in ("num_samples", "max_concurrent"):
            value = getattr(self, option)
            if value < 1:
                raise ConfigError(f"{option} (--{option.replace('_', '-')}) must be >= 1, got {value}")
        split_trial_resources(self.cpus_per_trial, self.gpus_per_trial, self.workers_per_trial)


def _trial_setup(request: SearchRequest, params: dict, space, tracking_uri, parent_run_id) -> TrialSetup:
    data, train = params["data"], params.get("train", {})
    root = Path(data["out"]).resolve()
    if not (root / "trainval.json").is_file():
        raise FileNotFoundError(f"{root}/trainval.json not found: run `dvc repro prepare` first")
    overrides = dict(train.get("overrides") or {})
    base = load_experiment(space.experiment, experiments_dir=request.experiments_dir, profile=train.get("profile"), overrides=overrides)
    base.solver.accumulation_steps(request.workers_per_trial)  # the global batch must split over the workers
    max_iter = request.max_iter or base.solver.max_iter
    overrides["solver.max_iter"] = max_iter
    # Trials run in their own folders: weight files named relative to the project must be absolute.
    for key, path in (("model.weights", base.model.weights), ("model.backbone.weights", base.model.backbone.weights)):
        if path and not path.startswith("torchvision:") and not Path(path).is_absolute():
            overrides[key] = str(Path(path).resolve())
    return TrialSetup(
        experiment=space.experiment,
        experiments_dir=str(request.experiments_dir.resolve()),
        profile=str(Path(train["profile"]).resolve()) if train.get("profile") else None,
        overrides=overrides,
        data_root=str(root),
        num_folds=data["num_folds"],
        test_fold=request.fold,
        val_fraction=request.val_fraction,
        eval_period=request.eval_period or max(1, max_iter // 4),
        metric=request.metric or space.metric,
        mode=request.mode or space.mode,
        seed=request.seed,
        tracking_uri=tracking_uri,
        parent_run_id=parent_run_id,
        workers_per_trial=request.workers_per_trial,
        cpus_per_trial=request.cpus_per_trial,
        gpus_per_trial=request.gpus_per_trial,
    )


def _options(request: SearchRequest, name: str, setup: TrialSetup) -> SearchOptions:
    return SearchOptions(
        name=name,
        storage_path=str(request.storage_path),
        num_samples=request.num_samples,
        max_concurrent=request.max_concurrent,
        cpus_per_trial=request.cpus_per_trial,
        gpus_per_trial=request.gpus_per_trial,
        workers_per_trial=request.workers_per_trial,
        max_failures=request.max_failures,
        grace_period=request.grace_period,
        max_evaluations=-(-setup.overrides["solver.max_iter"] // setup.eval_period),
    )


class SearchInterrupted(RuntimeError):
    """The search stopped (Ctrl+C / SIGINT) before every trial ended; the message says how to resume."""


def run_search(request: SearchRequest, params: dict) -> str:
    """Run (or resume) the search described by ``request``; returns the printed top-k table."""
    import ray

    from ultradet.experiment_log import SearchRun

    space = load_search_space(request.search_space, experiments_dir=request.experiments_dir)
    name = request.resume.name if request.resume else (request.name or request.search_space.stem)
    out_dir = Path(request.storage_path) / name
    search_run = SearchRun.start(params.get("tracking", {}), name=name, space=space, args=asdict(request), state_dir=out_dir)
    setup = _trial_setup(request, params, space, search_run.uri, search_run.run_id)
    options = _options(request, name, setup)

    ray.init(address=request.address, include_dashboard=False, log_to_driver=True, configure_logging=False)
    try:
        tuner = restore_tuner(request.resume, setup, options) if request.resume else build_tuner(space, setup, options)
        grid = tuner.fit()
    finally:
        ray.shutdown()

    ended = grid.num_terminated + grid.num_errors
    if ended < options.num_samples:
        raise SearchInterrupted(
            f"search '{name}' stopped with {ended}/{options.num_samples} trials ended; its state is saved. "
            f"Resume with: python pipelines/tune.py --search-space {request.search_space} --resume {grid.experiment_path}"
        )
    table = res.top_k(grid.get_dataframe(), space, metric=setup.metric, mode=setup.mode, k=request.top_k)
    csv_path, md_path = res.write_tables(table, out_dir)
    best = res.best_overrides(table, space)
    output = request.output or res.best_config_path(request.experiments_dir, name)
    res.write_best_experiment(
        space, best, output, experiments_dir=request.experiments_dir, metric_value=float(table.iloc[0][setup.metric])
    )
    if request.apply:
        res.apply_to_params(request.params, best)
    search_run.finish(
        best=best, artifacts=[csv_path, md_path, output], num_errors=len(grid.errors), max_iter=setup.overrides["solver.max_iter"]
    )
    return (
        f"top {len(table)} of search '{name}' by {setup.metric} ({setup.mode}):\n{md_path.read_text()}\n"
        f"best config: {output} (experiment '{res.experiment_name(output, request.experiments_dir)}')"
    )
