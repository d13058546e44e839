"""The pretraining corpus: simulated sweeps disjoint from the evaluated dataset.

The CPU profile's backbone starts from weights learned once on this corpus (the embedded
counterpart of ImageNet weights, spec section 3.2), so it must not contain any patient of the
dataset the folds are evaluated on: otherwise a test fold's videos would leak into training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ultradet.data.coco_vid import load_videos
from ultradet.data.records import VideoRecord
from ultradet.data.synthetic import generate_dataset
from ultradet.errors import UserError

SPLITS = ("trainval", "test")


class CorpusLeakError(UserError, ValueError):
    """The pretraining corpus shares patients with the evaluated dataset."""


def make_pretrain_corpus(
    out_dir: str | Path, *, dataset: str | Path, synthetic: Mapping[str, Any], progress: bool = True
) -> list[VideoRecord]:
    """Simulate the corpus into ``out_dir`` (all videos in ``trainval.json``; ``test.json`` empty)
    and check it is patient-disjoint from both splits of ``dataset``.

    Args:
        out_dir: destination (replaced atomically, see :func:`generate_dataset`).
        dataset: the evaluated dataset's root (``trainval.json``, ``test.json``).
        synthetic: :func:`generate_dataset` arguments (``num_videos``, ``seed``, ...); its ``seed``
            must differ from the dataset's.

    Returns:
        The corpus videos.

    Raises:
        CorpusLeakError: a corpus patient id is also in ``dataset`` (the message lists them).
    """
    generate_dataset(out_dir, **{**synthetic, "test_videos": 0, "num_folds": 0}, progress=progress)
    corpus = load_videos(out_dir, "trainval", num_folds=1)
    evaluated = {v.patient_id for split in SPLITS for v in load_videos(dataset, split, num_folds=1)}
    shared = sorted({v.patient_id for v in corpus} & evaluated)
    if shared:
        raise CorpusLeakError(
            f"pretraining corpus {out_dir} shares {len(shared)} patient(s) with {dataset}: {', '.join(shared[:10])}; "
            "use another pretrain.corpus.seed"
        )
    return corpus
