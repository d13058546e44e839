"""Video-level false-positive sequences per minute (spec section 4, "FP80 / FP90",
``calculate_video_level_fp``).

At a score threshold ``thr``, per video:
1. keep the detections with ``score > thr`` (a score equal to the threshold is dropped);
2. a kept box is a TP node if its centre ``((x1+x2)/2, (y1+y2)/2)`` lies inside, borders
   included, any GT box of its frame;
3. linking: a kept box in frame t may link to a kept box of frames t-1 ... t-5 (positions in
   the video's ``frame_id`` order; frames without kept boxes still use up their slot, so a gap
   of 4 empty frames can be bridged, a gap of 5 cannot). It links to the **single** candidate
   with the maximal IoU, if that IoU is ``> 0.5``. Ties (exact equal IoU) go to the most
   recent frame, then to the candidate first in canonical order (higher score first);
4. every box's links are followed to a root; a root and everything linked to it, directly or
   not, is one tree = one sequence (a box linked by several later boxes makes a branching tree;
   a box never links to two trees);
5. a tree is a true-positive track if TP nodes / all nodes > 0.9 (checked in integers:
   ``10 * tp > 9 * nodes``, so exactly 0.9 is an FP tree); every other tree counts as ONE FP;
6. FP per minute = sum over videos of FP trees / sum over videos of frames * 1800 (30 fps).

Frames are all ``images[]`` of the evaluated videos; a frame without predictions or without GT
is a frame like any other. Fixed defects of the original: no module-level tree counter (trees
are identified by their root box, computed afresh in every call), no crash on frames without
boxes, and the frame count no longer depends on how many predictions were emitted (oddity (i)).
"""

from __future__ import annotations

import numpy as np

from ultradet.evaluation.matching import group_by_frame, paired_iou, segment_pairs

FRAMES_PER_MINUTE = 1800  # 30 fps, as in the original
LINK_WINDOW = 5  # frames of history a box may link into
LINK_IOU = 0.5  # a link needs IoU strictly above this
TP_TRACK_RATIO = (9, 10)  # a track is TP if tp / nodes > 9 / 10
_PAIR_CHUNK = 1 << 20  # box pairs materialised at once when enumerating links (memory bound)


def centre_in_gt(
    boxes: np.ndarray, frame: np.ndarray, gt_boxes: np.ndarray, gt_frame: np.ndarray, num_frames: int
) -> np.ndarray:
    """Whether each box's centre lies inside (inclusive) any GT box of its frame.

    Args:
        boxes: float (N, 4) XYXY pixels; frame: int (N,) frame index.
        gt_boxes: float (G, 4) XYXY pixels; gt_frame: int (G,) frame index.

    Returns:
        bool (N,); False for frames without GT.
    """
    d_order, d_starts, d_counts = group_by_frame(frame, num_frames)
    g_order, g_starts, g_counts = group_by_frame(gt_frame, num_frames)
    ia, ib = segment_pairs(d_starts, d_counts, g_starts, g_counts)
    det, gt = d_order[ia], g_order[ib]
    cx = (boxes[det, 0] + boxes[det, 2]) / 2
    cy = (boxes[det, 1] + boxes[det, 3]) / 2
    g = gt_boxes[gt]
    inside = (g[:, 0] <= cx) & (cx <= g[:, 2]) & (g[:, 1] <= cy) & (cy <= g[:, 3])
    hit = np.zeros(len(boxes), dtype=bool)
    hit[det[inside]] = True
    return hit


def _chunks(sizes: np.ndarray, budget: int):
    """Consecutive slices of ``range(len(sizes))`` whose ``sizes`` sum to at most ``budget``
    (an item larger than ``budget`` gets a slice of its own)."""
    cum = np.cumsum(sizes)
    start = 0
    while start < len(sizes):
        done = int(cum[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(cum, done + budget, side="right")))
        yield slice(start, stop)
        start = stop


def candidate_links(
    boxes: np.ndarray, frame: np.ndarray, frame_video: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """All possible links (child -> parent): parent in one of the ``LINK_WINDOW`` preceding
    frames of the same video, IoU ``> LINK_IOU``, sorted so that for every child its winning
    parent comes first (max IoU, then most recent frame, then lower box index).

    Args:
        boxes: float (N, 4) XYXY pixels in canonical order; frame: int (N,) frame index.
        frame_video: int (F,) video of each frame; frames ordered by (video, frame_id).

    Returns:
        ``child``, ``parent``: int64 (L,) box indices, sorted by child (winner first).
    """
    num_frames = len(frame_video)
    order, starts, counts = group_by_frame(frame, num_frames)
    parts = []  # (child, parent, iou, lag) per lag and chunk
    for lag in range(1, LINK_WINDOW + 1):
        f = np.arange(lag, num_frames)
        f = f[frame_video[f] == frame_video[f - lag]]
        for part in _chunks(counts[f] * counts[f - lag], _PAIR_CHUNK):
            fc = f[part]
            ia, ib = segment_pairs(starts[fc], counts[fc], starts[fc - lag], counts[fc - lag])
            child, parent = order[ia], order[ib]
            iou = paired_iou(boxes[child], boxes[parent])
            keep = iou > LINK_IOU
            parts.append((child[keep], parent[keep], iou[keep], np.full(int(keep.sum()), lag)))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    child, parent, iou, lag = (np.concatenate(c) for c in zip(*parts))
    winner_first = np.lexsort((parent, lag, -iou, child))
    return child[winner_first], parent[winner_first]


def tree_roots(num_boxes: int, child: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """Root of every box's tree, given candidate links sorted winner-first per child.

    Args:
        num_boxes: boxes 0..num_boxes-1 are kept; links touching other boxes are ignored.
        child, parent: int (L,) from :func:`candidate_links`.

    Returns:
        int64 (num_boxes,), the root box index of each box (a box without a link is a root).
    """
    usable = (child < num_boxes) & (parent < num_boxes)
    child, parent = child[usable], parent[usable]
    first = np.r_[True, child[1:] != child[:-1]] if len(child) else np.zeros(0, dtype=bool)
    root = np.arange(num_boxes, dtype=np.int64)
    root[child[first]] = parent[first]
    # Pointer jumping: links point to strictly earlier frames (no cycles), so this converges in
    # about log2(longest chain) steps.
    while True:
        jumped = root[root]
        if np.array_equal(jumped, root):
            return root
        root = jumped


def fp_tree_roots(root: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """The roots of the trees whose TP-node ratio is not above 0.9 (the FP sequences).

    Args:
        root: int (K,) root of each kept box; tp: bool (K,) TP mark of each kept box.

    Returns:
        int64 (S,) root box indices, ascending (a tree is named by its root box).
    """
    nodes = np.bincount(root, minlength=len(root))
    tp_nodes = np.bincount(root[tp], minlength=len(root))
    num, den = TP_TRACK_RATIO
    return np.flatnonzero((nodes > 0) & (den * tp_nodes <= num * nodes))


def count_fp_trees(root: np.ndarray, tp: np.ndarray) -> int:
    """Number of trees whose TP-node ratio is not above 0.9 (arguments of :func:`fp_tree_roots`)."""
    return len(fp_tree_roots(root, tp))


def fp_per_minute(
    thresholds: np.ndarray,
    *,
    boxes: np.ndarray,
    scores: np.ndarray,
    frame: np.ndarray,
    frame_video: np.ndarray,
    gt_boxes: np.ndarray,
    gt_frame: np.ndarray,
) -> np.ndarray:
    """FP sequences per minute at each score threshold (module docstring).

    Args:
        thresholds: float (T,) score thresholds (NaN gives NaN).
        boxes: float (N, 4) XYXY pixels, scores: float (N,), frame: int (N,) frame index;
            detections in canonical order (score descending).
        frame_video: int (F,) video of each frame, frames ordered by (video, frame_id).
        gt_boxes: float (G, 4) XYXY pixels; gt_frame: int (G,) frame index.

    Returns:
        float64 (T,): FP sequences per 1800 frames; NaN where the threshold is NaN or F == 0.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    out = np.full(len(thresholds), np.nan)
    defined = ~np.isnan(thresholds)
    if len(frame_video) == 0 or not defined.any():
        return out
    # Scores are descending, so the boxes kept at a threshold are a prefix; links are only ever
    # needed among the boxes kept at the lowest threshold.
    kept = (scores > thresholds[:, None]).sum(axis=1)
    n_max = int(kept[defined].max())
    tp = centre_in_gt(boxes[:n_max], frame[:n_max], gt_boxes, gt_frame, len(frame_video))
    child, parent = candidate_links(boxes[:n_max], frame[:n_max], frame_video)
    for t in np.flatnonzero(defined):
        n = int(kept[t])
        out[t] = count_fp_trees(tree_roots(n, child, parent), tp[:n]) / len(frame_video) * FRAMES_PER_MINUTE
    return out
