import pytest

from ultradet.data import carve_validation, fold_of, patient_id, split_by_folds
from ultradet.data.errors import DatasetError
from ultradet.data.records import VideoRecord


@pytest.mark.parametrize(
    "pid, fold",
    [("2cda21c3aab26332", 0), ("1dc9ca2f1748c2ec", 2), ("2390fbea047347b", 2), ("x66ef02e7f1b9a0ef", 0)],
)
def test_spec_fold_vectors(pid, fold):
    assert fold_of(pid, 4) == fold


def test_one_fold_puts_everything_in_fold_zero():
    assert fold_of("1dc9ca2f1748c2ec", 1) == 0


def test_fold_of_rejects_zero_folds():
    with pytest.raises(ValueError, match="num_folds"):
        fold_of("abc", 0)


@pytest.mark.parametrize(
    "key, pid",
    [
        ("abc_1", "abc"),
        ("abc-L", "abc"),
        ("abc_2-R", "abc"),
        ("abc-r", "abc"),
        ("benign/abc_1", "abc"),
        ("abc_1.mp4@0123abcd", "abc"),
        ("malignant/2390fbea047347b", "2390fbea047347b"),  # CVA-BUS hex names are their own patient
        ("abc_x", "abc_x"),  # not a side/index suffix
    ],
)
def test_patient_id(key, pid):
    assert patient_id(key) == pid


def test_split_by_folds_keeps_order_and_partitions():
    videos = [VideoRecord(video_id=i, name=f"benign/v{i}", label="benign", patient_id=f"v{i}", fold=f, frames=())
              for i, f in enumerate([0, 1, 2, 1, 3])]
    train, test = split_by_folds(videos, test_folds=[1])
    assert [v.video_id for v in test] == [1, 3]
    assert [v.video_id for v in train] == [0, 2, 4]


def test_split_by_a_fold_without_videos_is_an_error():
    # `pipelines/train.py --fold 7` with 4 folds used to train on every video.
    videos = [VideoRecord(video_id=i, name=f"benign/v{i}", label="benign", patient_id=f"v{i}", fold=f, frames=())
              for i, f in enumerate([0, 1, 2, 3])]
    with pytest.raises(DatasetError, match=r"fold\(s\) 7 hold no video; the 4 videos are in fold\(s\) 0, 1, 2, 3"):
        split_by_folds(videos, test_folds=[7])


def test_validation_split_is_by_patient_seeded_and_order_keeping():
    # 5 patients, two with two videos each; 0.4 of 5 patients = 2 in validation.
    patients = ["a", "a", "b", "c", "c", "d", "e"]
    videos = [VideoRecord(video_id=i, name=f"benign/{p}_{i}", label="benign", patient_id=p, fold=0, frames=())
              for i, p in enumerate(patients)]
    train, val = carve_validation(videos, fraction=0.4, seed=3)
    assert len({v.patient_id for v in val}) == 2
    assert not {v.patient_id for v in train} & {v.patient_id for v in val}
    assert sorted(v.video_id for v in train + val) == list(range(7))
    assert [v.video_id for v in val] == sorted(v.video_id for v in val)
    assert carve_validation(videos, fraction=0.4, seed=3) == (train, val)
    # at least one patient each side, whatever the fraction
    assert len({v.patient_id for v in carve_validation(videos, fraction=0.01, seed=0)[1]}) == 1
    assert len({v.patient_id for v in carve_validation(videos, fraction=0.99, seed=0)[0]}) == 1


@pytest.mark.parametrize("fraction, patients, message", [
    (0.0, "ab", r"val_fraction must be in \(0, 1\)"), (1.0, "ab", r"val_fraction"), (0.5, "aa", r"at least 2 patients"),
])
def test_validation_split_refuses_what_cannot_split(fraction, patients, message):
    videos = [VideoRecord(video_id=i, name=f"benign/{p}", label="benign", patient_id=p, fold=0, frames=())
              for i, p in enumerate(patients)]
    with pytest.raises(DatasetError, match=message):
        carve_validation(videos, fraction=fraction, seed=0)
