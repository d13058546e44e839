"""Iteration-based trainer: AdamW + warm-up/step schedule, optional gradient clipping, AMP on
CUDA, gradient accumulation and data-parallel workers (DDP), atomic resumable checkpoints,
NaN/Inf guard, progress bar."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ultradet.engine.checkpoint import atomic_torch_save, checkpoint_path, resume_point
from ultradet.engine.distributed import WorkerGroup, mean_over_workers, wrap_data_parallel
from ultradet.engine.hooks import Hook
from ultradet.engine.runtime import rng_state, set_rng_state

Batch = list  # a list of clip dicts (docs/architecture.md)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or Inf; the message names the iteration and the loss term."""


def clip_seed(seed: int, draw: int) -> int:
    """The torch seed of the model's random draws (proposal sampling, dropout, NTCA context
    frames) for the clip at place ``draw`` of the training stream."""
    return int(np.random.SeedSequence([seed, draw, 0x5EED]).generate_state(1, dtype=np.uint64)[0] >> 1)


class ClipwiseLosses(torch.nn.Module):
    """The model's losses on a micro-batch, each clip run alone under its own seed.

    ``model`` is called on ``[clip]`` for each clip after ``torch.manual_seed(clip_seed(seed,
    clip["draw"]))``, and the losses are averaged over the clips (as the detector itself does).
    Seeding per clip makes a clip's random draws independent of which worker, accumulation step
    or batch position it lands in, so every split of a global batch gives the same gradient.
    """

    def __init__(self, model: torch.nn.Module, seed: int):
        super().__init__()
        self.model, self.seed = model, seed

    def forward(self, clips: list[dict]) -> dict[str, torch.Tensor]:
        per_clip = []
        for clip in clips:
            torch.manual_seed(clip_seed(self.seed, clip["draw"]))
            per_clip.append(self.model([clip]))
        return {name: torch.stack([losses[name] for losses in per_clip]).mean() for name in per_clip[0]}


class Trainer:
    """Runs ``max_iter`` optimizer steps of ``model``; one step = ``accumulation_steps``
    micro-batches from ``data`` on each of the data-parallel workers.

    The loss of a step is the mean over every clip of the global batch (``world_size x
    accumulation_steps x clips per micro-batch``): each micro-batch's mean loss is divided by
    ``accumulation_steps`` and DDP averages the gradients over workers, so ``base_lr`` and the
    schedule mean the same for any split. Logged losses are that same global mean.

    With a ``torch.distributed`` process group (``WorkerGroup.current()`` at construction) the
    model is wrapped in DDP; only rank 0 writes checkpoints and ``model_final.pth``, and hooks
    should only be given to rank 0.

    Args:
        model: returns a dict of named scalar losses when called on a batch (training mode).
        data: ``data(start_iter)`` returns an iterable of this worker's micro-batches (lists of
            clip dicts, each with its stream index ``draw``) beginning with the first micro-batch
            of iteration ``start_iter`` (0-based). Making the stream a function of the iteration
            is what lets a resumed run see exactly the batches the uninterrupted run would have.
        seed: with each clip's ``draw``, seeds the model's random draws (:class:`ClipwiseLosses`).
        accumulation_steps: micro-batches per optimizer step on each worker.
        optimizer, scheduler: stepped once per iteration.
        output_dir: checkpoints ``model_XXXXXXX.pth`` (XXXXXXX = iterations done) and
            ``model_final.pth`` are written here, each atomically.
        max_iter: number of optimizer steps.
        checkpoint_period: write a checkpoint every this many iterations.
        device: where the model and batches live.
        clip_value: clamp every gradient element to [-clip_value, clip_value]; None = off.
        clip_norm: rescale the gradients so their global 2-norm is at most this (DETR's
            ``max_norm``), after value clipping; None = off.
        amp: float16 autocast + gradient scaling; only on CUDA (ignored on CPU).
        hooks: observers called after each step and after training.
        progress: show a tqdm bar with iteration, losses and ETA.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        data: Callable[[int], Iterable[Batch]],
        seed: int,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        output_dir: str | Path,
        max_iter: int,
        checkpoint_period: int,
        device: torch.device,
        clip_value: float | None = None,
        clip_norm: float | None = None,
        amp: bool = False,
        accumulation_steps: int = 1,
        hooks: Sequence[Hook] = (),
        progress: bool = True,
    ):
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be >= 1, got {accumulation_steps}")
        self.model = model.to(device)
        self.group = WorkerGroup.current()
        self._losses = wrap_data_parallel(ClipwiseLosses(self.model, seed), device, self.group)
        self.accumulation_steps = accumulation_steps
        self.data = data
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.output_dir = Path(output_dir)
        self.max_iter = max_iter
        self.checkpoint_period = checkpoint_period
        self.device = device
        self.clip_value = clip_value
        self.clip_norm = clip_norm
        self.amp = amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.hooks = list(hooks)
        self.progress = progress and self.group.is_main
        self.iteration = 0

    def register_hook(self, hook: Hook) -> None:
        """Add an observer that needs the built trainer itself (its model, its state), such as a
        search's periodic validation; it is called after those given to ``__init__``."""
        self.hooks.append(hook)

    # ------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "rng": rng_state(),
        }

    def resume(self) -> int:
        """Load the newest intact checkpoint in ``output_dir`` if any (a truncated newer one is
        skipped with a warning, see :func:`resume_point`); returns the iteration to start at.

        Raises:
            CheckpointError: there are checkpoints but none of them loads.
        """
        found = resume_point(self.output_dir, map_location=self.device)
        if found is None:
            return 0
        _, state = found
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.iteration = state["iteration"]
        return self.iteration

    # ------------------------------------------------------------------------------ loop
    def train(self, *, resume: bool = True) -> Path:
        """Train to ``max_iter`` and write ``model_final.pth`` (model weights only).

        Returns:
            The path of ``model_final.pth``.

        Raises:
            NonFiniteLossError: a loss is NaN/Inf; no final model is written.
        """
        start = self.resume() if resume else 0
        self.model.train()
        batches = iter(self.data(start))
        bar = tqdm(total=self.max_iter, initial=start, desc="train", disable=not self.progress, dynamic_ncols=True)
        with bar:
            for self.iteration in range(start + 1, self.max_iter + 1):
                losses = self._step([next(batches) for _ in range(self.accumulation_steps)])
                lr = self.optimizer.param_groups[0]["lr"]
                self.scheduler.step()
                for hook in self.hooks:
                    hook.after_step(self.iteration, losses, lr)
                bar.set_postfix(loss=f"{sum(losses.values()):.3f}", lr=f"{lr:.2e}")
                bar.update(1)
                if self.iteration % self.checkpoint_period == 0 and self.iteration < self.max_iter:
                    self._checkpoint()
        for hook in self.hooks:
            hook.after_train()
        final = self.output_dir / "model_final.pth"
        if self.group.is_main:
            atomic_torch_save({"model": self.model.state_dict(), "iteration": self.max_iter}, final)
        return final

    def _checkpoint(self) -> None:
        for hook in self.hooks:
            if hasattr(hook, "flush"):
                hook.flush()
        if self.group.is_main:
            atomic_torch_save(self.state_dict(), checkpoint_path(self.output_dir, self.iteration))

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _step(self, micro_batches: list[Batch]) -> dict[str, float]:
        """One optimizer step over this worker's ``accumulation_steps`` micro-batches; returns the
        losses averaged over the global batch (identical on every worker)."""
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        for k, batch in enumerate(micro_batches):
            last = k == len(micro_batches) - 1
            # DDP all-reduces gradients in the backward of the last micro-batch only.
            no_sync = self._losses.no_sync() if self.group.world_size > 1 and not last else contextlib.nullcontext()
            with no_sync:
                with self._autocast():
                    loss_dict = self._losses(_to_device(batch, self.device))
                for name, value in loss_dict.items():
                    totals[name] = totals.get(name, 0.0) + float(value.detach()) / len(micro_batches)
                self.scaler.scale(sum(loss_dict.values()) / len(micro_batches)).backward()
        values = mean_over_workers(totals, self.group, self.device)
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise NonFiniteLossError(
                f"non-finite loss at iteration {self.iteration}: "
                + ", ".join(f"{name}={values[name]}" for name in bad)
                + " (training stopped; the original silently zeroed such losses)"
            )
        if self.clip_value is not None or self.clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
        if self.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.model.parameters(), self.clip_value)
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return values


def _to_device(obj, device: torch.device):
    """Move every tensor inside nested lists/dicts to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj
