"""Patient ids, patient-level folds (spec section 1, "K-fold rule") and the patient-level
validation split of a search.

The fold rule is the original's exactly, so fold membership on real CVA-BUS matches the published
folds: videos of one patient always share a fold, and the class folder does not enter the hash.
"""

from __future__ import annotations

import hashlib
import re
from typing import Iterable, Sequence

import numpy as np

from ultradet.data.errors import DatasetError
from ultradet.data.records import VideoRecord

# A trailing "_1", "-L", "_2-R", ... marks several videos of one patient.
_PATIENT_SUFFIX = re.compile(r"(.*?)[-_]\d?-?[lrLR]?$")


def patient_id(video_key: str) -> str:
    """The patient id of a video (spec section 1, steps 1-2).

    Args:
        video_key: the video's name in any of the forms the original meets: ``"benign/abc_1"``,
            ``"abc_1.mp4"``, ``"abc_1.mp4@<md5>"``.

    Returns:
        The basename without directory, extension and ``@`` suffix, minus a trailing
        ``[-_]<digit>?-?[lrLR]?`` suffix: ``"abc_1"``, ``"abc-L"``, ``"abc_2-R"`` -> ``"abc"``.
    """
    stem = video_key.split("@")[0].replace("\\", "/").rsplit("/", 1)[-1]
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    match = _PATIENT_SUFFIX.findall(stem)
    return match[0] if match else stem


def fold_of(patient: str, num_folds: int) -> int:
    """``int(sha256(patient.encode("utf-8")).hexdigest(), 16) % num_folds`` (spec section 1, step 3).

    Raises:
        ValueError: if ``num_folds < 1``.
    """
    if num_folds < 1:
        raise ValueError(f"num_folds must be >= 1, got {num_folds}")
    return int(hashlib.sha256(patient.encode("utf-8")).hexdigest(), 16) % num_folds


def split_by_folds(
    videos: Iterable[VideoRecord], test_folds: Sequence[int]
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Split videos into (train, test): test = videos whose ``fold`` is in ``test_folds``
    (spec section 1, step 4). Input order is kept in both lists.

    Raises:
        DatasetError: a fold of ``test_folds`` holds no video (e.g. fold 7 of 4 folds), which
            would silently train on every video; the message lists the folds present.
    """
    test_set = set(test_folds)
    videos = list(videos)
    present = {v.fold for v in videos}
    empty = sorted(test_set - present)
    if empty:
        raise DatasetError(
            f"fold(s) {', '.join(map(str, empty))} hold no video; the {len(videos)} videos are in "
            f"fold(s) {', '.join(map(str, sorted(present))) or 'none'} (folds run 0..num_folds-1)"
        )
    return [v for v in videos if v.fold not in test_set], [v for v in videos if v.fold in test_set]


def carve_validation(
    videos: Sequence[VideoRecord], *, fraction: float, seed: int
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """Split ``videos`` into (train, validation) by patient, so no patient is in both: a seeded
    permutation of the sorted patient ids puts ``round(fraction * patients)`` of them (at least
    one, and one fewer than all) in validation. Input order is kept in both lists.

    Raises:
        DatasetError: fewer than two patients, or ``fraction`` outside (0, 1).
    """
    if not 0 < fraction < 1:
        raise DatasetError(f"val_fraction must be in (0, 1), got {fraction}")
    patients = sorted({v.patient_id for v in videos})
    if len(patients) < 2:
        raise DatasetError(f"need at least 2 patients to carve a validation split, got {len(patients)}")
    n_val = min(len(patients) - 1, max(1, round(fraction * len(patients))))
    val = set(np.random.default_rng(seed).permutation(patients)[:n_val].tolist())
    return [v for v in videos if v.patient_id not in val], [v for v in videos if v.patient_id in val]
