"""Exact resume on the real detector and data stream: UltraDet trained N iterations straight
equals N/2, a kill, and a resumed N/2 (NTCA's dropout and random context frames, and the
clip stream, all depend on RNG state that the checkpoint must carry)."""

from pathlib import Path

import pytest
import torch
from interruption import KillAfter

from ultradet.config import load_experiment
from ultradet.data import load_videos, split_by_folds
from ultradet.engine.launch import build_trainer

ROOT = Path(__file__).resolve().parents[2]


def test_ultradet_resume_is_bit_identical(tmp_path, tiny_dataset):
    cfg = load_experiment(
        "ultradet", experiments_dir=ROOT / "experiments", profile=ROOT / "experiments/profiles/smoke.yaml",
        overrides={"solver.max_iter": 4, "solver.checkpoint_period": 2},
    )
    train, _ = split_by_folds(load_videos(tiny_dataset, "trainval", num_folds=4), [0])

    straight = build_trainer(cfg, train, tmp_path / "straight", progress=False)
    straight.train()

    killed = build_trainer(cfg, train, tmp_path / "resumed", hooks=[KillAfter(3)], progress=False)
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    torch.manual_seed(1234)  # a fresh process: the resumed run must not depend on this
    resumed = build_trainer(cfg, train, tmp_path / "resumed", progress=False)
    assert resumed.resume() == 2
    resumed.train()

    want, got = straight.model.state_dict(), resumed.model.state_dict()
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
