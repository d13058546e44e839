"""The pretraining corpus: simulated videos, refused when they share a patient with the data."""

import json

import pytest

from conftest import TINY
from ultradet.data import generate_dataset
from ultradet.data.corpus import CorpusLeakError, make_pretrain_corpus

CORPUS = {**TINY, "num_videos": 3, "seed": 11}


def test_corpus_is_disjoint_from_the_dataset(tmp_path, tiny_dataset):
    videos = make_pretrain_corpus(tmp_path / "corpus", dataset=tiny_dataset, synthetic=CORPUS, progress=False)
    assert len(videos) == 3
    assert json.loads((tmp_path / "corpus" / "test.json").read_text())["videos"] == []


def test_corpus_sharing_patients_is_refused(tmp_path):
    # a dataset simulated with the corpus' own seed holds exactly the corpus' patients
    dataset = generate_dataset(tmp_path / "data", **{**CORPUS, "test_videos": 0}, num_folds=0, progress=False)
    with pytest.raises(CorpusLeakError, match="shares 3 patient"):
        make_pretrain_corpus(tmp_path / "corpus", dataset=dataset, synthetic=CORPUS, progress=False)
