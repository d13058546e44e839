"""Shared fixtures for the whole test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from ultradet.data.synthetic import generate_dataset

# The tiny dataset's shape, for tests that assert on it.
TINY = dict(num_videos=8, test_videos=2, min_frames=12, max_frames=20, size=64, seed=0)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated CVA-BUS-style dataset (``rawframes/``, ``trainval.json``, ``test.json``):
    8 trainval videos (2 per patient fold of 4) + 2 test videos, 12-20 frames of 64 x 64, seed 0.

    Session-scoped and shared: tests must not modify it (copy it first, see ``tests/data``)."""
    return generate_dataset(tmp_path_factory.mktemp("tiny") / "cva_bus", progress=False, **TINY)
