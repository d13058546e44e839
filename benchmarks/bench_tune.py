"""Wall time of 4 equal Ray Tune trials at concurrency 2 versus 1 (target ratio <= 0.6 on 2 cores).

Trials are identical (a one-option search space) and ASHA cannot stop them early (grace period =
all evaluations), so the ratio measures scheduling alone. Uses the embedded dataset of
params.yaml (run `dvc repro prepare` first) and the smoke profile with --max-iter iterations.

    python benchmarks/bench_tune.py [--max-iter 60]

Measured on the 2-core machine: 0.61 at 20 iterations (fixed start-up cost dominates), 0.56 at 60.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_search(tmp: Path, concurrency: int, max_iter: int) -> float:
    space = tmp / "space.yaml"
    space.write_text(yaml.safe_dump({"experiment": "ultradet", "params": {"model.temporal.interval_pre_test": {"choice": [3]}}}))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["out"] = str(ROOT / params["data"]["out"])
    params["train"] = {"profile": str(ROOT / "experiments/profiles/smoke.yaml"), "overrides": {}}
    params["tracking"] = {"uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "bench"}
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = [
        sys.executable, str(ROOT / "pipelines/tune.py"), "--search-space", str(space), "--params", str(tmp / "params.yaml"),
        "--experiments-dir", str(ROOT / "experiments"), "--output", str(tmp / "best.yaml"),
        "--storage-path", str(tmp / f"tune{concurrency}"), "--name", f"c{concurrency}", "--num-samples", "4",
        "--max-concurrent", str(concurrency), "--cpus-per-trial", "1", "--max-iter", str(max_iter),
        "--eval-period", str(max_iter), "--grace-period", "1",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=tmp, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-iter", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        serial = run_search(Path(tmp), 1, args.max_iter)
        parallel = run_search(Path(tmp), 2, args.max_iter)
    result = {"trials": 4, "max_iter": args.max_iter, "concurrency_1_s": serial, "concurrency_2_s": parallel,
              "ratio": parallel / serial}
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_tune.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
