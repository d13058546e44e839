"""False positives by cause at the fold's operating points: localisation error, lesion mimic (by
kind) or background, as FP detections and as FP sequences per minute.

The paper's claim is that negative temporal context suppresses false positives on structures one
frame cannot tell from a lesion (Yu et al., MICCAI 2023, section 1). The FP metrics (spec
section 4) count false positives but do not say on what; this sorts them, in the spirit of the
error types of TIDE (Bolya et al., ECCV 2020: localisation, duplicate, confusion with another
object, background), with the mimics of the embedded dataset as the "other objects"
(:mod:`ultradet.mimic_sidecar`).

Operating points: recall 0.8 and 0.9, at the score thresholds ``thr80`` and ``thr90`` of the
fold's metrics (spec section 4, "Score thresholds for FP metrics"; taken from the metrics, not
recomputed). At a threshold the kept detections are those with ``score > thr``, as for FP80/FP90.

A detection's **cause** (:func:`classify`), first rule that applies:

1. ``localisation``: it overlaps a ground-truth lesion box of its frame (IoU > 0, i.e. an
   intersection of positive area). The detector fired on the lesion but boxed it badly (IoU
   < 0.5) or twice (a duplicate of a matched box, TIDE's "Dupe"). This wins over a mimic it also
   overlaps: the lesion is the likelier trigger, and a box on a lesion is never the mimic's fault.
2. ``mimic:<kind>``: at least half of its area lies on a mimic box of its frame
   (intersection over the detection's area >= :data:`MIMIC_MIN_IOD`). Intersection over the
   *detection* rather than IoU, because the sidecar boxes only the mimic's visible
   cross-section, while its posterior shadowing or enhancement, part of what makes it look like
   a lesion, lies beneath: a detection boxing mimic and shadow together (twice the mimic's
   height, IoU 0.5) or one part of a long duct is still the mimic's; a large box that merely
   contains a small mimic is mostly tissue and is background. Several mimics: the largest
   fraction wins; an exact tie goes to the kind first in alphabetical order.
3. ``background``: anything else (tissue, ligaments, a mimic in a frame where its cross-section
   is too small to be recorded).

Without a sidecar (CVA-BUS) the causes are ``localisation`` and ``background`` only.

**FP detections** of a cause: kept detections that are not true positives of the IoU-0.5
greedy matching of the PR curve (spec section 4, AP), by their cause; over all causes they are
the curve's cumulative FP count at the threshold.

**FP sequences** of a cause: the FP trees of FP80/FP90 (:mod:`.fp_sequences`, spec section 4:
linked kept boxes whose TP-node ratio is not above 0.9), each attributed to the cause held by
most of its boxes (all nodes, TP-marked ones included: a sequence that sits mostly on the lesion
is a localisation error); a tie goes to the cause listed first (localisation, the mimic kinds
alphabetically, background). Per minute as FP80: sequences / frames * 1800. Summed over the
causes they are FP80 / FP90 exactly.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ultradet.evaluation.fp_sequences import (
    FRAMES_PER_MINUTE,
    candidate_links,
    centre_in_gt,
    fp_tree_roots,
    tree_roots,
)
from ultradet.evaluation.inputs import EvalInputs, EvaluationInputError, build_inputs
from ultradet.evaluation.matching import (
    best_gt_per_detection,
    box_area,
    greedy_match,
    group_by_frame,
    paired_intersection,
    segment_pairs,
)
from ultradet.evaluation.names import threshold_name
from ultradet.mimic_sidecar import MimicBoxes

CAUSE_RECALLS = (0.8, 0.9)  # the operating points: Pr80 / Pr90 (thr80 / thr90)
LOCALISATION, BACKGROUND, MIMIC_PREFIX = "localisation", "background", "mimic:"
MIMIC_MIN_IOD = 0.5  # intersection over the detection's area that makes it a mimic's (module docstring)
CSV_NAME = "fp_causes.csv"
CSV_COLUMNS = ("recall", "threshold", "cause", "fp_detections", "fp_sequences", "fp_per_minute")


def cause_names(kinds: Iterable[str] = ()) -> tuple[str, ...]:
    """The causes in tie-break order: ``localisation``, ``mimic:<kind>`` per kind
    (alphabetical), ``background``."""
    return (LOCALISATION, *(MIMIC_PREFIX + k for k in sorted(kinds)), BACKGROUND)


@dataclass(frozen=True)
class FPCauses:
    """False positives by cause at each operating point.

    Attributes:
        causes: cause names (:func:`cause_names`), the columns of the count arrays.
        recalls: float (R,) recall level of each operating point (0.8, 0.9).
        thresholds: float64 (R,) the score threshold of each (NaN: none, e.g. no detection).
        fp_detections: float64 (R, C) FP detections per cause (NaN where the threshold is NaN).
        fp_sequences: float64 (R, C) FP sequences per cause (NaN likewise).
        num_frames: frames of the evaluated videos.
    """

    causes: tuple[str, ...]
    recalls: tuple[float, ...]
    thresholds: np.ndarray
    fp_detections: np.ndarray
    fp_sequences: np.ndarray
    num_frames: int

    @property
    def fp_per_minute(self) -> np.ndarray:
        """float64 (R, C): FP sequences per 1800 frames (30 fps), NaN without frames."""
        if self.num_frames == 0:
            return np.full_like(self.fp_sequences, np.nan)
        return self.fp_sequences / self.num_frames * FRAMES_PER_MINUTE


def _best_mimic(
    boxes: np.ndarray, frame: np.ndarray, mimic_boxes: np.ndarray, mimic_frame: np.ndarray, mimic_kind: np.ndarray,
    num_frames: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per detection, the largest fraction of its area on one mimic box of its frame and that
    mimic's kind (ties: the smaller kind index): float64 (N,) (0 without mimic) and int64 (N,)
    (-1 without)."""
    d_order, d_starts, d_counts = group_by_frame(frame, num_frames)
    m_order, m_starts, m_counts = group_by_frame(mimic_frame, num_frames)
    ia, ib = segment_pairs(d_starts, d_counts, m_starts, m_counts)
    det, mimic = d_order[ia], m_order[ib]
    area = box_area(boxes[det])
    iod = np.zeros(len(det), dtype=np.float64)
    np.divide(paired_intersection(boxes[det], mimic_boxes[mimic]), area, out=iod, where=area > 0)
    best_iod = np.zeros(len(boxes), dtype=np.float64)
    best_kind = np.full(len(boxes), -1, dtype=np.int64)
    order = np.lexsort((mimic_kind[mimic], -iod, det))  # per detection: best fraction, then kind
    first = order[np.r_[True, det[order][1:] != det[order][:-1]]] if len(order) else order
    best_iod[det[first]] = iod[first]
    best_kind[det[first]] = mimic_kind[mimic[first]]
    return best_iod, best_kind


def classify(
    boxes: np.ndarray,
    frame: np.ndarray,
    num_frames: int,
    *,
    gt_boxes: np.ndarray,
    gt_frame: np.ndarray,
    mimic_boxes: np.ndarray | None = None,
    mimic_frame: np.ndarray | None = None,
    mimic_kind: np.ndarray | None = None,
    num_kinds: int = 0,
) -> np.ndarray:
    """The cause of every box (module docstring), as an index into ``cause_names(kinds)``.

    Args:
        boxes: float (N, 4) XYXY pixels; frame: int (N,) frame index in [0, num_frames).
        gt_boxes: float (G, 4) XYXY pixels; gt_frame: int (G,) frame index.
        mimic_boxes: float (M, 4) XYXY pixels, mimic_frame: int (M,) frame index, mimic_kind:
            int (M,) index of the kind in the sorted kinds; None: no sidecar.
        num_kinds: how many mimic kinds the causes list (the sidecar's ``kinds``).

    Returns:
        int64 (N,): 0 localisation, 1 + k mimic kind k, ``1 + num_kinds`` background.
    """
    cause = np.full(len(boxes), 1 + num_kinds, dtype=np.int64)
    if mimic_boxes is not None and len(mimic_boxes):
        iod, kind = _best_mimic(boxes, frame, mimic_boxes, mimic_frame, mimic_kind, num_frames)
        on_mimic = iod >= MIMIC_MIN_IOD
        cause[on_mimic] = 1 + kind[on_mimic]
    lesion_iou, _ = best_gt_per_detection(boxes, frame, gt_boxes, gt_frame, num_frames)
    cause[lesion_iou > 0] = 0
    return cause


def count_by_cause(
    thresholds: np.ndarray,
    *,
    cause: np.ndarray,
    tp: np.ndarray,
    num_causes: int,
    boxes: np.ndarray,
    scores: np.ndarray,
    frame: np.ndarray,
    frame_video: np.ndarray,
    gt_boxes: np.ndarray,
    gt_frame: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """FP detections and FP sequences per cause at each threshold (module docstring).

    Args:
        thresholds: float (T,) score thresholds (NaN gives a NaN row).
        cause: int (N,) cause index of each detection (:func:`classify`).
        tp: bool (N,) the detections' TP flags of the IoU-0.5 greedy matching (AP, PR curve).
        num_causes: C, the number of causes.
        boxes, scores, frame, frame_video, gt_boxes, gt_frame: as
            :func:`ultradet.evaluation.fp_sequences.fp_per_minute` (detections in canonical
            order, score descending).

    Returns:
        ``(fp_detections, fp_sequences)``: float64 (T, C) each.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    detections = np.full((len(thresholds), num_causes), np.nan)
    sequences = np.full((len(thresholds), num_causes), np.nan)
    defined = ~np.isnan(thresholds)
    if not defined.any():
        return detections, sequences
    kept = (scores > thresholds[:, None]).sum(axis=1)  # scores descending: a prefix is kept
    n_max = int(kept[defined].max())
    centre_tp = centre_in_gt(boxes[:n_max], frame[:n_max], gt_boxes, gt_frame, len(frame_video))
    child, parent = candidate_links(boxes[:n_max], frame[:n_max], frame_video)
    for t in np.flatnonzero(defined):
        n = int(kept[t])
        detections[t] = np.bincount(cause[:n][~tp[:n]], minlength=num_causes)
        root = tree_roots(n, child, parent)
        # Boxes per (tree root, cause); argmax takes the first maximum: the tie-break order.
        per_tree = np.bincount(root * num_causes + cause[:n], minlength=n * num_causes).reshape(n, num_causes)
        tree_cause = per_tree[fp_tree_roots(root, centre_tp[:n])].argmax(axis=1)
        sequences[t] = np.bincount(tree_cause, minlength=num_causes)
    return detections, sequences


def _mimics_on_frames(gt: dict, inputs: EvalInputs, mimics: MimicBoxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sidecar's boxes of the evaluated videos as (boxes (M, 4), frame index (M,), kind (M,)).

    Raises:
        EvaluationInputError: an evaluated video is missing from the sidecar or named otherwise
            there, or a box lies on a frame_id the ground truth does not have.
    """
    names = {int(v["id"]): str(v.get("name")) for v in gt["videos"]}
    evaluated = np.unique(inputs.frame_video)
    for vid in evaluated.tolist():
        if mimics.videos.get(vid) != names[vid]:
            found = "missing" if vid not in mimics.videos else f"named {mimics.videos[vid]!r}"
            raise EvaluationInputError(
                f"the mimic sidecar does not match the ground truth: video {vid} ({names[vid]!r}) is {found} in it "
                "(a sidecar of another dataset or split?)"
            )
    index = {int(i): f for f, i in enumerate(inputs.frame_image_id.tolist())}
    frame_of = {(int(im["video_id"]), int(im["frame_id"])): index.get(int(im["id"]), -1) for im in gt["images"]}
    keep = np.isin(mimics.video_id, evaluated)
    keys = list(zip(mimics.video_id[keep].tolist(), mimics.frame_id[keep].tolist()))
    unknown = [k for k in keys if k not in frame_of]
    if unknown:
        raise EvaluationInputError(
            f"the mimic sidecar has boxes on {len(unknown)} frame(s) the ground truth lacks, e.g. video "
            f"{unknown[0][0]} frame_id {unknown[0][1]}"
        )
    frames = np.array([frame_of[k] for k in keys], dtype=np.int64)
    return mimics.boxes[keep], frames, mimics.kind[keep]


def _thresholds(metrics: Mapping[str, float], recalls: tuple[float, ...]) -> np.ndarray:
    missing = [threshold_name(r) for r in recalls if threshold_name(r) not in metrics]
    if missing:
        raise ValueError(f"the fold's metrics lack the operating points' thresholds {', '.join(missing)}")
    values = [metrics[threshold_name(r)] for r in recalls]
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)  # metrics.json: null


def fp_by_cause(
    gt: dict,
    results: list[dict],
    metrics: Mapping[str, float],
    *,
    mimics: MimicBoxes | None = None,
    video_ids: Iterable[int] | None = None,
    recalls: Iterable[float] = CAUSE_RECALLS,
) -> FPCauses:
    """False positives by cause at the fold's operating points (module docstring).

    Args:
        gt, results, video_ids: as :func:`ultradet.evaluation.evaluate` (the same evaluation).
        metrics: that evaluation's metrics, holding ``thr80`` and ``thr90`` (``thr{100r}`` of
            each recall level; ``None`` or NaN: no operating point, the rows are NaN).
        mimics: the dataset's mimic sidecar (:func:`ultradet.mimic_sidecar.read`); None: no
            sidecar, causes ``localisation`` and ``background`` only.
        recalls: the operating points' recall levels.

    Raises:
        EvaluationInputError: as :func:`ultradet.evaluation.evaluate`, or a sidecar that does not
            match ``gt`` (an evaluated video missing or named otherwise, a box on an unknown frame).
        ValueError: ``metrics`` lacks a threshold.
    """
    recalls = tuple(float(r) for r in recalls)
    thresholds = _thresholds(metrics, recalls)
    inputs = build_inputs(gt, results, video_ids)
    kinds = mimics.kinds if mimics is not None else ()
    mimic_args = {}
    if mimics is not None:
        boxes, frames, kind = _mimics_on_frames(gt, inputs, mimics)
        mimic_args = dict(mimic_boxes=boxes, mimic_frame=frames, mimic_kind=kind, num_kinds=len(kinds))
    cause = classify(
        inputs.det_boxes, inputs.det_frame, inputs.num_frames, gt_boxes=inputs.gt_boxes, gt_frame=inputs.gt_frame, **mimic_args
    )
    max_iou, argmax = best_gt_per_detection(
        inputs.det_boxes, inputs.det_frame, inputs.gt_boxes, inputs.gt_frame, inputs.num_frames
    )
    detections, sequences = count_by_cause(
        thresholds,
        cause=cause,
        tp=greedy_match(max_iou, argmax, 0.5),
        num_causes=len(cause_names(kinds)),
        boxes=inputs.det_boxes,
        scores=inputs.det_scores,
        frame=inputs.det_frame,
        frame_video=inputs.frame_video,
        gt_boxes=inputs.gt_boxes,
        gt_frame=inputs.gt_frame,
    )
    return FPCauses(cause_names(kinds), recalls, thresholds, detections, sequences, inputs.num_frames)


def save_fp_causes(causes: FPCauses, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/fp_causes.csv``: one row per operating point and cause, columns
    ``recall, threshold, cause, fp_detections, fp_sequences, fp_per_minute`` (counts; FP
    sequences per minute at 30 fps; ``nan`` where the operating point does not exist).

    Returns:
        The file's path.
    """
    path = Path(out_dir) / CSV_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    per_minute = causes.fp_per_minute
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for i, r in enumerate(causes.recalls):
            for c, name in enumerate(causes.causes):
                writer.writerow([r, repr(float(causes.thresholds[i])), name, _count(causes.fp_detections[i, c]),
                                 _count(causes.fp_sequences[i, c]), repr(float(per_minute[i, c]))])
    return path


def _count(value: float) -> str:
    return "nan" if np.isnan(value) else str(int(value))
