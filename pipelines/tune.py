"""Ray Tune hyperparameter search over an experiment's config keys.

Examples:
    python pipelines/tune.py --search-space experiments/search/ultradet_temporal.yaml --num-samples 8
    python pipelines/tune.py --search-space ... --address 127.0.0.1:6379     # existing Ray cluster
    python pipelines/tune.py --search-space ... --resume tune_results/<name>  # continue a search

Each trial trains on the training folds (all folds but ``--fold``) and is evaluated every
``--eval-period`` iterations on a patient-level validation split carved from them; the test
fold is never seen. Reads ``data``, ``train`` and ``tracking`` from ``--params``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ultradet.config import read_yaml
from ultradet.errors import run_cli

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--search-space", required=True, type=Path, help="search-space YAML (experiments/search/*.yaml)")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="pipeline params (data, train, tracking)")
    p.add_argument("--num-samples", type=int, default=8, help="number of trials")
    p.add_argument("--max-concurrent", type=int, default=2, help="trials running at once")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs reserved per trial")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial; fractions share a GPU (0.5 = two trials per GPU)")
    p.add_argument("--workers-per-trial", type=int, default=1, help="data-parallel Ray Train workers per trial (DDP); "
                   "they split the trial's CPUs (less 0.01 for the trial's own process) and GPUs evenly, "
                   "and solver.clips_per_batch must divide by it")
    p.add_argument("--address", default=None, help="connect to an existing Ray cluster (e.g. 10.0.0.5:6379 or 'auto'); default: start a local one. "
                   "A token-authenticated cluster needs RAY_AUTH_TOKEN (Ray's own mechanism)")
    p.add_argument("--metric", default=None, help="metric to optimise (default: the space file's, else FP90)")
    p.add_argument("--mode", choices=["min", "max"], default=None, help="min or max (default: the space file's, else min)")
    p.add_argument("--seed", type=int, default=0, help="seeds the searcher and every trial")
    p.add_argument("--fold", type=int, default=0, help="test fold held out from every trial")
    p.add_argument("--val-fraction", type=float, default=0.25, help="fraction of training patients used for validation")
    p.add_argument("--max-iter", type=int, default=None, help="training iterations per trial (default: the profile's)")
    p.add_argument("--eval-period", type=int, default=None, help="iterations between validations (default: max-iter / 4)")
    p.add_argument("--grace-period", type=int, default=1, help="validations every trial gets before ASHA may stop it")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial")
    p.add_argument("--top-k", type=int, default=5, help="rows of the printed/saved top-k table")
    p.add_argument("--name", default=None, help="search name (default: the space file's stem)")
    p.add_argument("--storage-path", type=Path, default=Path("tune_results"), help="where Tune keeps trial state")
    p.add_argument("--resume", type=Path, default=None, help="resume the interrupted search in this folder")
    p.add_argument("--output", type=Path, default=None, help="best-config experiment file (default: experiments/tuned/<name>.yaml, "
                   "the experiment 'tuned/<name>' for params.yaml models:)")
    p.add_argument("--apply", action="store_true", help="also write the best values into params.yaml train.overrides")
    p.add_argument("--experiments-dir", type=Path, default=Path("experiments"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from ultradet.tuning.driver import SearchInterrupted, SearchRequest, run_search

    params = read_yaml(args.params)
    try:
        print(run_search(SearchRequest(**vars(args)), params))
    except SearchInterrupted as stopped:
        print(stopped, file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "tune"))
