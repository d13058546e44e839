"""Track-YOLO's tracker (baselines spec 2.4, the original's ``CacheTracker``): filters a
one-stage detector's per-frame detections by whether they start or continue a track."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import complete_box_iou, nms

from ultradet.config import ExperimentConfig
from ultradet.modeling.tracking.kalman import BoxKalmanFilter

# Below every complete IoU (which lies in (-1.5, 1]): the score of a pair whose complete IoU is
# undefined, so that the pair is never kept.
_UNDEFINED_CIOU = -2.0


class TrackState(enum.Enum):
    """A track's state; NEW and TRACKED tracks are *active* (predicted and matched)."""

    NEW = "new"
    TRACKED = "tracked"
    LOST = "lost"


@dataclass
class Track:
    """One track: its id (unique within a video), box filter, state and the number of
    consecutive frames it has gone unmatched (``lost_frames``)."""

    track_id: int
    kalman: BoxKalmanFilter
    state: TrackState = TrackState.NEW
    lost_frames: int = 0

    @property
    def active(self) -> bool:
        """Whether the track predicts and can be matched (a LOST track never is again)."""
        return self.state is not TrackState.LOST


class CacheTracker:
    """The original's ``CacheTracker`` (baselines spec 2.4, per-frame rules 1-7): on each frame
    of a video, in order,

    1. keep the detections scoring above ``valid_score_thresh``, then NMS at ``sparse_nms_thresh``;
    2. every active (NEW or TRACKED) track predicts its box with its Kalman filter
       (:class:`BoxKalmanFilter`);
    3. score detections x predicted boxes by complete IoU (Zheng et al., AAAI 2020:
       ``IoU - rho^2 / c^2 - alpha * v``), assign by the Hungarian algorithm maximising the
       total, and keep the pairs whose complete IoU exceeds ``kalman_iou_thresh``;
    4. a matched track corrects its filter with the detection's box and becomes TRACKED;
    5. every other track (LOST ones included) becomes LOST and counts one more lost frame; a
       track is dropped once its own count exceeds ``track_buffer_size``;
    6. an unmatched detection scoring above ``new_score_thresh`` starts a NEW track, the other
       unmatched detections are dropped;
    7. the output is the detections that started tracks (in NMS order) then the matched ones
       (in NMS order), with the detector's boxes and scores, not the filter's.

    A LOST track is never active again, so a detection only continues a box of the previous
    frame; the output is causal. Track ids count from 0 in each video.

    **Bug fixed** (spec 2.4): the original decides the removal of rule 5 by the lost count of a
    stale loop variable (the last track of the prediction loop), not of the track being
    removed; here each lost track is dropped by its own count. Lost tracks are inert, so only
    how many are stored changes, never an output. ``track_buffer_size`` bounds exactly that:
    the original's track history, also sized by a buffer, keeps its default length 1 and is
    never read.

    Complete IoU is torchvision's (``eps = 1e-7`` in the enclosing diagonal and in ``alpha``;
    the original adds ``1e-5`` to the heights in ``v`` and to ``alpha``'s denominator), and a
    pair with an undefined complete IoU (a box clipped to a point has no aspect ratio) is never
    kept. Kalman filters run in float64 on the CPU, where the assignment runs.

    Args:
        valid_score_thresh: rule 1 score threshold (exclusive).
        sparse_nms_thresh: rule 1 NMS IoU threshold.
        kalman_iou_thresh: rule 3 complete-IoU threshold (exclusive).
        new_score_thresh: rule 6 score threshold (exclusive).
        track_buffer_size: rule 5, the most consecutive unmatched frames a stored track has.
    """

    def __init__(
        self,
        *,
        valid_score_thresh: float,
        sparse_nms_thresh: float,
        kalman_iou_thresh: float,
        new_score_thresh: float,
        track_buffer_size: int,
    ):
        self.valid_score_thresh = valid_score_thresh
        self.sparse_nms_thresh = sparse_nms_thresh
        self.kalman_iou_thresh = kalman_iou_thresh
        self.new_score_thresh = new_score_thresh
        self.track_buffer_size = track_buffer_size
        self.tracks: dict[int, Track] = {}  # by track id, in order of creation
        self.next_id = 0

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "CacheTracker":
        """The tracker of ``cfg.model.tracker``."""
        return cls(**cfg.model.tracker.model_dump())

    def reset(self) -> None:
        """Start a new video: drop every track and count ids from 0 again."""
        self.tracks = {}
        self.next_id = 0

    def update(self, detections: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Track the next frame's detections (rules 1-7 of the class docstring).

        Args:
            detections: ``{"boxes": FloatTensor[N, 4] (XYXY pixels of the original frame),
                "scores": FloatTensor[N], "labels": LongTensor[N]}``; other keys are ignored.

        Returns:
            ``{"boxes": FloatTensor[M, 4], "scores": FloatTensor[M], "labels": LongTensor[M],
            "track_ids": LongTensor[M]}``, rows of ``detections`` (M <= N), on their device:
            the detections that started a track, then those that continued one, each with the
            id of its track.

        Raises:
            ValueError: a key is missing, the shapes disagree, or a box that starts or continues a
                track is not finite.
        """
        boxes, scores, labels = _unpack(detections)
        candidates = self._candidates(boxes, scores)
        measured = boxes[candidates].detach().to("cpu", torch.float64)
        active = [track for track in self.tracks.values() if track.active]
        predicted = [track.kalman.predict() for track in active]
        rows, columns = self._associate(measured, predicted)
        for row, column in zip(rows, columns):
            self._continue(active[column], measured[row])
        self._mark_lost(matched={active[column].track_id for column in columns})
        candidate_scores = scores[candidates].detach().cpu()
        unmatched = [row for row in range(len(candidates)) if row not in rows]
        new_rows = [row for row in unmatched if candidate_scores[row] > self.new_score_thresh]
        new_ids = [self._start(measured[row]) for row in new_rows]
        kept = candidates[torch.tensor(new_rows + rows, dtype=torch.long, device=candidates.device)]
        track_ids = new_ids + [active[column].track_id for column in columns]
        return {
            "boxes": boxes[kept],
            "scores": scores[kept],
            "labels": labels[kept],
            "track_ids": torch.tensor(track_ids, dtype=torch.long, device=boxes.device),
        }

    def _candidates(self, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Rule 1: ``LongTensor[K]``, indices of the detections above the score threshold that
        survive NMS, by decreasing score."""
        valid = torch.nonzero(scores > self.valid_score_thresh).flatten()
        return valid[nms(boxes[valid], scores[valid], self.sparse_nms_thresh)]

    def _associate(self, measured: torch.Tensor, predicted: list[torch.Tensor]) -> tuple[list[int], list[int]]:
        """Rule 3: ``(rows, columns)``, the kept Hungarian pairs of detections (rows of
        ``measured`` ``[K, 4]``) and predicted boxes (``predicted``, each ``[4]``), rows
        ascending."""
        if len(measured) == 0 or not predicted:
            return [], []
        ciou = association_scores(measured, torch.stack(predicted))
        rows, columns = linear_sum_assignment(ciou.numpy(), maximize=True)
        pairs = [(int(r), int(c)) for r, c in zip(rows, columns) if ciou[r, c] > self.kalman_iou_thresh]
        return [r for r, _ in pairs], [c for _, c in pairs]

    def _continue(self, track: Track, box: torch.Tensor) -> None:
        """Rule 4: the track's filter is corrected with the detection's box."""
        track.kalman.update(box)
        track.state = TrackState.TRACKED
        track.lost_frames = 0

    def _mark_lost(self, matched: set[int]) -> None:
        """Rule 5: every track not in ``matched`` is LOST for one more frame, and dropped once
        its own lost count exceeds ``track_buffer_size`` (the spec's Bug, fixed)."""
        for track_id in [track_id for track_id in self.tracks if track_id not in matched]:
            track = self.tracks[track_id]
            track.state = TrackState.LOST
            track.lost_frames += 1
            if track.lost_frames > self.track_buffer_size:
                del self.tracks[track_id]

    def _start(self, box: torch.Tensor) -> int:
        """Rule 6: a NEW track whose filter starts at ``box``; returns its id."""
        track = Track(track_id=self.next_id, kalman=BoxKalmanFilter(box))
        self.tracks[track.track_id] = track
        self.next_id += 1
        return track.track_id


def association_scores(boxes: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Rule 3's score matrix: complete IoU (torchvision's ``complete_box_iou``) of each
    detection with each track's predicted box, ``-2`` (below every complete IoU) where it is
    undefined (a box clipped to a point has no aspect ratio), so that such a pair is never kept.

    Args:
        boxes: ``Tensor[K, 4]``, detections (XYXY pixels).
        predicted: ``Tensor[T, 4]``, predicted boxes (XYXY pixels).

    Returns:
        ``Tensor[K, T]`` in ``(-1.5, 1]``, or ``-2``.
    """
    return complete_box_iou(boxes, predicted).nan_to_num(nan=_UNDEFINED_CIOU)


def _unpack(detections: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(boxes [N, 4], scores [N], labels [N])`` of a detections dict; ValueError naming what is
    missing or misshapen."""
    missing = [key for key in ("boxes", "scores", "labels") if key not in detections]
    if missing:
        raise ValueError(f"tracker input lacks {missing}; expected 'boxes', 'scores' and 'labels'")
    boxes, scores, labels = detections["boxes"], detections["scores"], detections["labels"]
    if boxes.dim() != 2 or boxes.shape[1] != 4 or scores.shape != (len(boxes),) or labels.shape != (len(boxes),):
        raise ValueError(
            "tracker input must be boxes [N, 4], scores [N], labels [N]; got "
            f"{tuple(boxes.shape)}, {tuple(scores.shape)}, {tuple(labels.shape)}"
        )
    return boxes, scores, labels
