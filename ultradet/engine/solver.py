"""Optimizer and learning-rate schedule (spec section 2: AdamW, linear warm-up, step decay)."""

from __future__ import annotations

from bisect import bisect_right

import torch

from ultradet.config import SolverConfig


def build_optimizer(model: torch.nn.Module, cfg: SolverConfig) -> torch.optim.AdamW:
    """AdamW over every trainable parameter with one weight decay (no norm/bias exemption, as in
    the original). A parameter whose name contains a key of ``cfg.lr_multipliers`` (the first
    that matches, in the config's order) trains at ``base_lr`` times its factor, as the original's
    substring test (baselines spec, "Solver"); group 0 always holds the parameters at ``base_lr``
    (the one whose lr is logged), empty if none is."""
    factors: dict[float, list[torch.nn.Parameter]] = {1.0: []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            factor = next((f for key, f in cfg.lr_multipliers.items() if key in name), 1.0)
            factors.setdefault(factor, []).append(param)
    groups = [{"params": params, "lr": cfg.base_lr * factor} for factor, params in factors.items()]
    return torch.optim.AdamW(groups, lr=cfg.base_lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


class WarmupMultiStep:
    """LR factor at iteration ``it``: linear warm-up from ``warmup_factor`` to 1 over
    ``warmup_iters``, times ``gamma ** (number of steps <= it)`` (detectron2's WarmupMultiStepLR).

    A class rather than a closure so that the scheduler's state dict stays picklable.
    """

    def __init__(self, *, steps: tuple[int, ...], gamma: float, warmup_iters: int, warmup_factor: float):
        self.steps = sorted(steps)
        self.gamma = gamma
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor

    def __call__(self, it: int) -> float:
        warmup = 1.0
        if it < self.warmup_iters:
            alpha = it / self.warmup_iters
            warmup = self.warmup_factor * (1 - alpha) + alpha
        return warmup * self.gamma ** bisect_right(self.steps, it)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: SolverConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration scheduler; call ``step()`` once after each optimizer step."""
    factor = WarmupMultiStep(
        steps=cfg.steps, gamma=cfg.gamma, warmup_iters=cfg.warmup_iters, warmup_factor=cfg.warmup_factor
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
