"""The published UltraDet table (MICCAI 2023 README, spec section 5), transcribed once as data.

Units as published: Pr, AP and R in percent, FP in FP sequences per minute, FPS in frames per
second on the authors' (unstated) GPU. ``*_sd`` is the population std (ddof 0) over folds 1-3;
FPS has no std. Groups and row order follow the README.
"""

from __future__ import annotations

import io

import pandas as pd

from ultradet.evaluation.names import PAPER_METRICS

_PUBLISHED_CSV = """\
display_name,group,type,Pr80,Pr80_sd,Pr90,Pr90_sd,FP80,FP80_sd,FP90,FP90_sd,AP50,AP50_sd,R16,R16_sd,FPS
YOLOX,One-stage,Image,69.7,3.7,43.4,7.7,23.8,4.8,87.6,24.5,80.4,1.6,97.5,0.5,59.8
RetinaNet,One-stage,Image,75.7,2.5,57.2,2.9,9.3,2.0,32.8,6.5,84.5,1.0,95.1,0.6,53.6
FCOS,One-stage,Image,87.2,2.2,72.2,5.1,11.0,2.4,23.0,3.7,89.5,1.4,98.8,0.3,56.1
DeFCN,One-stage,Image,81.5,1.8,67.5,2.3,21.1,3.2,33.4,4.3,86.4,1.3,99.3,0.3,51.2
Track-YOLO,One-stage,Video,75.1,2.7,47.0,3.1,18.1,1.9,74.2,14.7,80.1,1.0,94.7,0.9,46.0
DeformDETR,DETR-based,Image,90.1,3.2,72.7,10.6,5.6,2.2,37.8,20.9,90.5,2.0,98.7,0.3,33.8
TransVOD,DETR-based,Video,92.5,2.2,77.5,7.2,3.1,1.3,23.7,11.5,90.1,1.8,98.4,0.4,24.2
CVA-Net,DETR-based,Video,92.3,2.6,80.2,6.1,4.7,2.6,19.6,5.6,91.6,1.9,98.6,0.8,23.1
PTSEFormer,DETR-based,Video,93.3,1.9,85.4,6.0,2.8,1.1,12.5,9.8,91.5,1.6,97.9,1.2,9.1
FasterRCNN,Faster R-CNN-based,Image,91.3,0.9,75.2,3.6,6.9,1.4,34.4,6.7,88.0,1.4,92.4,1.0,49.2
RelationNet,Faster R-CNN-based,Image,91.4,1.3,79.2,2.9,6.2,2.0,24.4,5.6,87.6,1.7,92.4,0.9,42.7
FGFA,Faster R-CNN-based,Video,92.9,1.5,82.2,4.1,4.4,1.6,13.3,3.7,90.5,1.1,93.6,0.9,33.8
SELSA,Faster R-CNN-based,Video,91.6,1.7,80.2,2.5,7.5,1.5,23.3,5.5,89.2,1.1,92.6,0.8,43.8
MEGA,Faster R-CNN-based,Video,93.9,1.5,86.9,2.3,3.1,1.7,11.7,3.0,90.9,1.0,93.6,0.7,40.2
BasicDet (RDN),Faster R-CNN-based,Video,92.4,1.0,83.6,2.2,3.8,1.2,13.4,3.2,88.7,1.4,92.7,0.6,42.2
UltraDet,Faster R-CNN-based,Video,95.7,1.2,90.8,1.4,1.9,0.4,5.7,1.6,91.6,1.6,93.8,1.3,30.4
"""

PUBLISHED_METRICS = PAPER_METRICS


def published_summary() -> pd.DataFrame:
    """The published table in the report's long layout: one row per (model, metric) with
    columns ``model, display_name, group, type, metric, mean, sd, se, n`` in table units
    (``se`` and ``n`` are NaN: the number of folds behind the table is ambiguous, spec section 5;
    FPS has NaN ``sd``)."""
    wide = pd.read_csv(io.StringIO(_PUBLISHED_CSV))
    rows = []
    for record in wide.to_dict("records"):
        for metric in PUBLISHED_METRICS:
            rows.append(
                {
                    "model": record["display_name"],
                    "display_name": record["display_name"],
                    "group": record["group"],
                    "type": record["type"],
                    "metric": metric,
                    "mean": record[metric],
                    "sd": record.get(f"{metric}_sd", float("nan")),
                    "se": float("nan"),
                    "n": float("nan"),
                }
            )
    return pd.DataFrame(rows)


ADDED_MARK = "†"
ADDED_NOTE = f"{ADDED_MARK} not in the published table (added by this project); no published numbers to compare."


def mark_added(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` (long statistics frame) with :data:`ADDED_MARK` appended to the display name
    of every model that has no row in the published table (matched by display name)."""
    published = set(published_summary()["display_name"])
    added = ~summary["display_name"].isin(published)
    return summary.assign(display_name=summary["display_name"].where(~added, summary["display_name"] + f" {ADDED_MARK}"))


def beside_published(summary: pd.DataFrame) -> pd.DataFrame:
    """Each measured model followed by its published row (display name suffixed "(published)"),
    in ``summary``'s order; models without a published row are marked (:func:`mark_added`) and
    stand alone. Same long layout as ``summary``."""
    published = published_summary()
    parts = []
    for model, rows in mark_added(summary).groupby("model", sort=False):
        parts.append(rows)
        match = published[published["display_name"] == rows["display_name"].iloc[0]]
        if len(match):
            parts.append(match.assign(model=f"{model}:published", display_name=match["display_name"] + " (published)"))
    return pd.concat(parts, ignore_index=True)
