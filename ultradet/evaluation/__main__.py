"""Command line: ``python -m ultradet.evaluation --gt GT.json --pred PRED.json --out OUT_DIR
[--folds 0 [1 ...] --num-folds 4] [--mimics SIDECAR.json]``.

Evaluates a COCO results file against a COCO-VID ground truth (optionally only the videos of
some patient folds, spec section 1), writes ``metrics.json``, ``pr_curve.csv``, ``fp_curve.csv``,
``per_video.csv`` (each video its own patient: the patient rule needs ``ultradet.data``) and
``fp_causes.csv`` (false positives by cause; lesion mimics told apart with the ground truth's
mimic sidecar, by default ``<GT stem>_mimics.json`` beside it when there is one) into OUT_DIR and
prints a summary table. Malformed inputs exit with status 1 and
a one-line message naming the entry (``ULTRADET_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ultradet import mimic_sidecar
from ultradet.errors import run_cli
from ultradet.evaluation.evaluate import EvaluationResult, evaluate, save_metrics
from ultradet.evaluation.fp_causes import fp_by_cause, save_fp_causes
from ultradet.evaluation.names import (
    AP_METRICS,
    COUNT_KEYS,
    FP_METRICS,
    PRECISION_METRICS,
    RECALL_METRIC,
    THRESHOLD_METRICS,
)

# Rows of the summary table: (metric key, label, scale for display).
_SUMMARY = (
    [(k, f"{k} (%)", 100) for k in AP_METRICS + PRECISION_METRICS]
    + [(k, f"{k} (score)", 1) for k in THRESHOLD_METRICS]
    + [(k, f"{k} (/min)", 1) for k in FP_METRICS]
    + [(RECALL_METRIC, f"R@{RECALL_METRIC[1:]} (%)", 100)]
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ultradet.evaluation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--gt", type=Path, required=True, help="COCO-VID ground-truth JSON")
    p.add_argument("--pred", type=Path, required=True, help="COCO results JSON (list of detections)")
    p.add_argument("--out", type=Path, required=True, help="output folder for metrics.json and the curves")
    p.add_argument("--folds", type=int, nargs="+", default=None, help="evaluate only the videos of these folds")
    p.add_argument("--num-folds", type=int, default=4, help="number of patient folds (with --folds)")
    p.add_argument("--mimics", type=Path, default=None,
                   help="mimic sidecar of the ground truth (default: <GT stem>_mimics.json beside --gt, if any)")
    return p.parse_args(argv)


def videos_in_folds(gt: dict, folds: list[int], num_folds: int) -> list[int]:
    """Ids of ``gt["videos"]`` whose patient fold (``fold_of(patient_id(name), num_folds)``,
    spec section 1) is in ``folds``."""
    # Imported here: ultradet.data pulls in torch, which the metrics themselves never need.
    from ultradet.data import fold_of, patient_id

    wanted = set(folds)
    return [int(v["id"]) for v in gt["videos"] if fold_of(patient_id(str(v["name"])), num_folds) in wanted]


def format_summary(result: EvaluationResult) -> str:
    """A two-column text table of the headline metrics (fractions shown as percentages)."""
    m = result.metrics
    lines = [f"{'metric':<16}{'value':>10}", "-" * 26]
    for key, label, scale in _SUMMARY:
        value = m.get(key, math.nan)
        lines.append(f"{label:<16}{value * scale:>10.{4 if key.startswith('thr') else 2}f}")
    lines.append("-" * 26)
    for key in COUNT_KEYS:
        lines.append(f"{key:<16}{m[key]:>10d}")
    return "\n".join(lines)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path}: not valid JSON ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gt = _read_json(args.gt)
    results = _read_json(args.pred)
    if not isinstance(results, list):
        raise SystemExit(f"{args.pred}: expected a COCO results list, got {type(results).__name__}")
    video_ids = None
    if args.folds is not None:
        video_ids = videos_in_folds(gt, args.folds, args.num_folds)
        if not video_ids:
            raise SystemExit(f"no video of {args.gt} is in folds {args.folds} of {args.num_folds}")
    result = evaluate(gt, results, video_ids=video_ids)
    paths = save_metrics(result, args.out)
    sidecar = args.mimics or mimic_sidecar.sidecar_path(args.gt.parent, args.gt.stem)
    mimics = mimic_sidecar.read(sidecar) if args.mimics is not None or sidecar.is_file() else None
    paths["fp_causes"] = save_fp_causes(fp_by_cause(gt, results, result.metrics, mimics=mimics, video_ids=video_ids), args.out)
    print(format_summary(result))
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "ultradet.evaluation"))
