"""IoU and the greedy detection-to-GT matching of AP and R@16 (spec section 4, ``eval_map``).

IoU convention: pixel-continuous boxes, area = (x2 - x1) * (y2 - y1), **no +1** (older mmdet
added 1 to widths and heights; we do not). A pair whose union is empty has IoU 0.

All functions are vectorised over boxes: pairs of boxes that share a frame are enumerated with
:func:`segment_pairs` instead of Python loops over frames or boxes.
"""

from __future__ import annotations

import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of each box, float (P,) pixels^2, from float (P, 4) XYXY absolute pixels (no +1)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def paired_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise intersection area of ``a[i]`` and ``b[i]`` (float (P, 4) XYXY absolute
    pixels), float (P,) pixels^2; 0 for disjoint or merely touching boxes."""
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    return np.clip(iw, 0, None) * np.clip(ih, 0, None)


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of ``a[i]`` and ``b[i]``.

    Args:
        a, b: float (P, 4) XYXY absolute pixels.

    Returns:
        float64 (P,) in [0, 1].
    """
    inter = paired_intersection(a, b)
    area_a = box_area(a)
    area_b = box_area(b)
    union = area_a + area_b - inter
    out = np.zeros(len(inter), dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def group_by_frame(frame: np.ndarray, num_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group items by frame index, keeping their order within a frame.

    Args:
        frame: int (N,) frame index of each item, in [0, num_frames).

    Returns:
        ``order`` (N,): item indices grouped by frame (stable); ``starts`` (num_frames,) and
        ``counts`` (num_frames,): frame f's items are ``order[starts[f]:starts[f] + counts[f]]``.
    """
    order = np.argsort(frame, kind="stable")
    counts = np.bincount(frame, minlength=num_frames).astype(np.int64)
    starts = np.cumsum(counts) - counts
    return order, starts, counts


def segment_pairs(
    starts_a: np.ndarray, counts_a: np.ndarray, starts_b: np.ndarray, counts_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All (a, b) pairs of each segment: for every s, the Cartesian product of
    ``range(starts_a[s], starts_a[s] + counts_a[s])`` and the same for b.

    Args:
        starts_a, counts_a, starts_b, counts_b: int (S,).

    Returns:
        ``ia``, ``ib``: int64 (P,), P = sum(counts_a * counts_b); pairs are ordered by segment,
        then a, then b (so all pairs of one a are contiguous, b ascending).
    """
    sizes = counts_a * counts_b
    total = int(sizes.sum())
    seg = np.repeat(np.arange(len(sizes)), sizes)
    local = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    width = counts_b[seg]
    return starts_a[seg] + local // width, starts_b[seg] + local % width


def best_gt_per_detection(
    det_boxes: np.ndarray, det_frame: np.ndarray, gt_boxes: np.ndarray, gt_frame: np.ndarray, num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each detection's maximal IoU against the GT boxes of its frame, and which GT attains it.

    Args:
        det_boxes: float (N, 4) XYXY pixels; det_frame: int (N,) frame index.
        gt_boxes: float (G, 4) XYXY pixels; gt_frame: int (G,) frame index.

    Returns:
        ``max_iou`` float64 (N,) (0 for a frame without GT) and ``argmax`` int64 (N,), an index
        into ``gt_boxes`` (-1 for a frame without GT). Ties go to the GT that comes first in
        ``gt_boxes`` (annotation order), as ``np.argmax`` would.
    """
    d_order, d_starts, d_counts = group_by_frame(det_frame, num_frames)
    g_order, g_starts, g_counts = group_by_frame(gt_frame, num_frames)
    ia, ib = segment_pairs(d_starts, d_counts, g_starts, g_counts)
    det, gt = d_order[ia], g_order[ib]
    iou = paired_iou(det_boxes[det], gt_boxes[gt])
    max_iou = np.zeros(len(det_boxes), dtype=np.float64)
    argmax = np.full(len(det_boxes), -1, dtype=np.int64)
    # The first pair per detection after sorting by (det, -iou, gt) is its best, lowest-index GT.
    order = np.lexsort((gt, -iou, det))
    first = order[np.r_[True, det[order][1:] != det[order][:-1]]] if len(order) else order
    max_iou[det[first]] = iou[first]
    argmax[det[first]] = gt[first]
    return max_iou, argmax


def greedy_match(max_iou: np.ndarray, argmax: np.ndarray, iou_thr: float) -> np.ndarray:
    """TP flags of the greedy per-frame matching (spec section 4, AP): detections are visited
    by score, highest first; one whose max IoU is ``>= iou_thr`` is a TP if its argmax GT is
    still unmatched (and then matches it), otherwise an FP; max IoU ``< iou_thr`` is an FP.

    Because the argmax is taken over *all* GT of the frame (matched or not, as in the original),
    the visit reduces to: a detection is TP iff it qualifies and is the first qualifying
    detection of its argmax GT. GT indices are global, so frames cannot interfere.

    Args:
        max_iou, argmax: (N,) from :func:`best_gt_per_detection`, detections in canonical
            order (score descending; see ``inputs``), which is each frame's visiting order.
        iou_thr: IoU threshold in (0, 1].

    Returns:
        bool (N,) TP flags.
    """
    tp = np.zeros(len(max_iou), dtype=bool)
    qualified = np.flatnonzero(max_iou >= iou_thr)
    _, first = np.unique(argmax[qualified], return_index=True)
    tp[qualified[first]] = True
    return tp


def per_frame_rank(det_frame: np.ndarray, num_frames: int) -> np.ndarray:
    """0-based rank of each detection within its frame (detections in canonical order, so rank 0
    is the frame's highest-scoring one). int64 (N,)."""
    order, starts, _ = group_by_frame(det_frame, num_frames)
    rank = np.empty(len(det_frame), dtype=np.int64)
    rank[order] = np.arange(len(order)) - starts[det_frame[order]]
    return rank
