"""Training hooks: small observers called by the trainer after each step.

A hook is any object with ``after_step(iteration, losses, lr)`` and ``after_train()``; the
trainer never depends on what a hook does (MLflow logging lives in ``ultradet.experiment_log``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Protocol


class Hook(Protocol):
    def after_step(self, iteration: int, losses: dict[str, float], lr: float) -> None:
        """Called after optimizer step ``iteration`` (1-based) with the step's scalar losses."""

    def after_train(self) -> None:
        """Called once after the last iteration, before the final model is written."""


class LossCSVWriter:
    """Appends one row per iteration to ``path`` (columns ``iteration, lr, loss_total, <losses>``).

    On resume from iteration ``start_iter`` rows after it are dropped first, so the file always
    describes exactly one run of the schedule.
    """

    def __init__(self, path: str | Path, *, start_iter: int = 0):
        self.path = Path(path)
        self._rows = self._read_rows(start_iter)
        self._fields: list[str] | None = list(self._rows[0]) if self._rows else None

    def _read_rows(self, start_iter: int) -> list[dict]:
        if start_iter == 0 or not self.path.is_file():
            return []
        with self.path.open(newline="") as f:
            return [row for row in csv.DictReader(f) if int(row["iteration"]) <= start_iter]

    def after_step(self, iteration: int, losses: dict[str, float], lr: float) -> None:
        row = {"iteration": iteration, "lr": lr, "loss_total": sum(losses.values()), **losses}
        if self._fields is None:
            self._fields = list(row)
        self._rows.append(row)

    def after_train(self) -> None:
        self.flush()

    def flush(self) -> None:
        """Rewrite the CSV (called at checkpoints and at the end)."""
        if not self._fields:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields)
            writer.writeheader()
            writer.writerows(self._rows)
        tmp.replace(self.path)
