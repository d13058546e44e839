import pytest
import torch

from ultradet.config import SolverConfig
from ultradet.engine.solver import WarmupMultiStep, build_lr_scheduler, build_optimizer


def test_warmup_multistep_factor_hand_values():
    f = WarmupMultiStep(steps=(6, 8), gamma=0.1, warmup_iters=4, warmup_factor=0.001)
    assert f(0) == pytest.approx(0.001)
    assert f(2) == pytest.approx(0.001 * 0.5 + 0.5)  # halfway through warm-up
    assert f(4) == pytest.approx(1.0)
    assert f(5) == pytest.approx(1.0)
    assert f(6) == pytest.approx(0.1)
    assert f(8) == pytest.approx(0.01)


def test_scheduler_drives_optimizer_lr():
    model = torch.nn.Linear(2, 1)
    cfg = SolverConfig(base_lr=1.0, steps=(3,), warmup_iters=0, gamma=0.5)
    opt = build_optimizer(model, cfg)
    sched = build_lr_scheduler(opt, cfg)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.5])


def test_optimizer_skips_frozen_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].weight.requires_grad_(False)
    opt = build_optimizer(model, SolverConfig())
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == 2 + 2 + 1  # frozen 2x2 weight excluded


def test_lr_multipliers_by_name_substring_first_match_wins_and_follow_the_schedule():
    model = torch.nn.ModuleDict(
        {
            "backbone": torch.nn.Linear(2, 2),
            "sampling_offsets": torch.nn.Linear(2, 2),
            "head": torch.nn.Linear(2, 1),
        }
    )
    cfg = SolverConfig(base_lr=1.0, steps=(2,), gamma=0.5, warmup_iters=0, lr_multipliers={"backbone": 0.1, "offsets": 0.3, "sampling": 0.7})
    opt = build_optimizer(model, cfg)
    by_lr = {round(g["lr"], 6): {id(p) for p in g["params"]} for g in opt.param_groups}
    assert opt.param_groups[0]["lr"] == 1.0 and by_lr[1.0] == {id(p) for p in model["head"].parameters()}
    assert by_lr[0.1] == {id(p) for p in model["backbone"].parameters()}
    assert by_lr[0.3] == {id(p) for p in model["sampling_offsets"].parameters()}  # "offsets" listed first
    sched = build_lr_scheduler(opt, cfg)
    for _ in range(2):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05, 0.15])


def test_without_multipliers_one_group_as_before():
    opt = build_optimizer(torch.nn.Linear(2, 1), SolverConfig(base_lr=0.5))
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == 0.5
