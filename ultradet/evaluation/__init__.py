"""ultradet.evaluation: the paper's video-detection metrics (spec section 4) from a COCO-VID
ground truth and COCO results, numpy only.

- ``AP50``, ``AP75``, ``mAP``: VOC all-point AP over frames pooled as images (average_precision)
- ``Pr70/80/90``, ``thr70/80/90``: precision and score threshold at recall (precision_at_recall)
- ``FP70/80/90``: false-positive sequences per minute at 30 fps (fp_sequences)
- ``R16``: recall with at most 16 outputs per frame (recall)
- per video at the Pr80/Pr90 operating points: FP sequences, FP detections, TP, recall (per_video)
- false positives by cause (localisation, lesion mimic by kind, background) at the Pr80 / Pr90
  operating points, as FP detections and FP sequences per minute (fp_causes; ``fp_causes.csv``)
- the temporal ablation: how much a second run of the same frames changes each frame's top
  detection, and its file (ablation; ``temporal_ablation.json``)

``python -m ultradet.evaluation --gt GT.json --pred PRED.json --out DIR`` runs it from the shell.
"""

from ultradet.evaluation.ablation import detection_change, save_temporal_ablation
from ultradet.evaluation.evaluate import EvaluationResult, evaluate, save_metrics
from ultradet.evaluation.fp_causes import FPCauses, fp_by_cause, save_fp_causes
from ultradet.evaluation.inputs import EvaluationInputError

__all__ = [
    "EvaluationInputError",
    "EvaluationResult",
    "FPCauses",
    "detection_change",
    "evaluate",
    "fp_by_cause",
    "save_fp_causes",
    "save_metrics",
    "save_temporal_ablation",
]
