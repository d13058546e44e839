"""benchmarks/device_check.py: without CUDA it stops at once with its message and writes nothing;
its measurements run (here on the CPU, at the smoke profile) and its table reports errors and
skipped models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def device_check(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import device_check

    return device_check


def test_without_cuda_it_stops_with_one_message_and_writes_nothing(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "device_check.py"), "--out", str(tmp_path / "check")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line
    assert "CUDA is not available" in proc.stderr and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_measurements_run_at_a_profile(device_check, tmp_path):
    smoke = str(ROOT / "experiments" / "profiles" / "smoke.yaml")
    cpu = torch.device("cpu")
    train = device_check.measure_training("ultradet", smoke, amp=False, warmup=0, iters=1, device=cpu, weights_dir=str(tmp_path))
    assert train["s_per_micro_batch"] > 0 and train["peak_memory_mib"] is None
    assert train["s_per_iteration"] == train["s_per_micro_batch"] * train["micro_batches_per_iteration"]
    infer = device_check.measure_inference("ultradet", smoke, amp=False, size=64, warmup=1, frames=2, device=cpu, weights_dir=str(tmp_path))
    assert infer["fps"] > 0


def test_table_reports_numbers_errors_and_skipped_models(device_check):
    result = {
        "gpu": "G", "torch": "t", "cuda": "c", "profile": "p", "size": 948, "wall_s": 3.0,
        "models": [
            {"experiment": "fasterrcnn", "train_fp32_s_per_iteration": 1.234, "train_amp_s_per_iteration": 0.5,
             "train_fp32_peak_memory_mib": 2048.0, "train_amp_peak_memory_mib": 1024.0, "infer_fp32_fps": 40.0,
             "infer_amp_fps": 60.04},
            {"experiment": "mega", "train_fp32_error": "CUDA out of memory", "infer_fp32_fps": 10.0},
            {"experiment": "defcn", "skipped": "time budget of 420 s spent"},
        ],
    }
    rows = device_check.markdown(result).splitlines()[-3:]
    assert rows[0] == "| fasterrcnn | 1.23 | 0.50 | 2.0 | 1.0 | 40.0 | 60.0 |  |"
    assert rows[1] == "| mega | - | - | - | - | 10.0 | - | train_fp32: CUDA out of memory |"
    assert rows[2] == "| defcn | - | - | - | - | - | - | time budget of 420 s spent |"
