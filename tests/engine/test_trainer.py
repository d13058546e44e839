import math

import pytest
import torch
from interruption import KillAfter

from ultradet.config import SolverConfig
from ultradet.engine import LossCSVWriter, NonFiniteLossError, Trainer, build_lr_scheduler, build_optimizer
from ultradet.engine.checkpoint import CheckpointError, last_checkpoint, load_checkpoint


class ToyDetector(torch.nn.Module):
    """Stands in for the detector: takes a batch (list of clip dicts), returns named losses.
    Dropout makes the result depend on torch's RNG, which the trainer seeds per clip."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 1))

    def forward(self, batch):
        x = torch.stack([clip["x"] for clip in batch])
        y = torch.stack([clip["y"] for clip in batch])
        out = self.net(x).squeeze(-1)
        return {"loss_a": ((out - y) ** 2).mean(), "loss_b": out.abs().mean() * 0.1}


def batches_from(start_iter):
    it = start_iter
    while True:
        g = torch.Generator().manual_seed(1000 + it)
        yield [{"x": torch.randn(4, generator=g), "y": torch.randn((), generator=g), "draw": 2 * it + k} for k in range(2)]
        it += 1


def make_trainer(out, max_iter, model=None, period=3, hooks=(), clip_norm=None):
    torch.manual_seed(0)
    model = model or ToyDetector()
    cfg = SolverConfig(base_lr=1e-2, max_iter=max_iter, steps=(4,), warmup_iters=2)
    opt = build_optimizer(model, cfg)
    return Trainer(
        model=model, data=batches_from, seed=0, optimizer=opt, scheduler=build_lr_scheduler(opt, cfg),
        output_dir=out, max_iter=max_iter, checkpoint_period=period, device=torch.device("cpu"),
        hooks=hooks, progress=False, clip_norm=clip_norm,
    )


def test_resume_gives_identical_weights(tmp_path):
    straight = make_trainer(tmp_path / "a", 6)
    straight.train()
    killed = make_trainer(tmp_path / "b", 6, period=3, hooks=[KillAfter(4)])
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    assert last_checkpoint(tmp_path / "b").name == "model_0000003.pth"
    assert not (tmp_path / "b" / "model_final.pth").exists()
    torch.manual_seed(123)  # a new process has another RNG state: resume must restore it
    resumed = make_trainer(tmp_path / "b", 6, period=3)
    resumed.train()
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_holds_full_state(tmp_path):
    trainer = make_trainer(tmp_path, 4, period=2)
    trainer.train()
    state = load_checkpoint(tmp_path / "model_0000002.pth")
    assert state["iteration"] == 2
    assert {"model", "optimizer", "scheduler", "rng", "scaler"} <= set(state)
    assert not list(tmp_path.glob("*.tmp"))
    final = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert final["iteration"] == 4


class NaNAt(ToyDetector):
    def __init__(self, at):
        super().__init__()
        self.calls, self.at = 0, at

    def forward(self, batch):
        self.calls += 1
        losses = super().forward(batch)
        if self.calls == self.at:
            losses["loss_b"] = losses["loss_b"] * float("nan")
        return losses


def test_nan_loss_stops_with_iteration_and_term(tmp_path):
    trainer = make_trainer(tmp_path, 5, model=NaNAt(5))  # the trainer calls the model once per clip, 2 per step
    with pytest.raises(NonFiniteLossError, match=r"iteration 3: loss_b=nan"):
        trainer.train()
    assert not (tmp_path / "model_final.pth").exists()


def test_loss_csv_has_one_row_per_iteration_and_survives_resume(tmp_path):
    csv_path = tmp_path / "losses.csv"
    trainer = make_trainer(tmp_path, 4, period=2, hooks=[LossCSVWriter(csv_path)])
    trainer.train()
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "iteration,lr,loss_total,loss_a,loss_b"
    assert [int(l.split(",")[0]) for l in lines[1:]] == [1, 2, 3, 4]
    row = lines[1].split(",")
    assert math.isclose(float(row[2]), float(row[3]) + float(row[4]), rel_tol=1e-9)
    # resuming from iteration 2 drops rows 3-4 and appends fresh ones
    writer = LossCSVWriter(csv_path, start_iter=2)
    writer.after_step(3, {"loss_a": 1.0, "loss_b": 2.0}, 0.1)
    writer.flush()
    assert [int(l.split(",")[0]) for l in csv_path.read_text().splitlines()[1:]] == [1, 2, 3]


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_newest_checkpoint_is_skipped_with_a_warning_naming_it(tmp_path):
    straight = make_trainer(tmp_path / "a", 6, period=2)
    straight.train()
    killed = make_trainer(tmp_path / "b", 6, period=2, hooks=[KillAfter(5)])
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    newest = tmp_path / "b" / "model_0000004.pth"
    truncate(newest)  # a disk that filled up while it was written, or a bad copy
    resumed = make_trainer(tmp_path / "b", 6, period=2)
    with pytest.warns(UserWarning, match=rf"{newest}: unreadable checkpoint.*resuming from model_0000002.pth instead"):
        resumed.train()  # from iteration 2 the run is the uninterrupted one
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_no_readable_checkpoint_is_an_error_naming_each(tmp_path, keep):
    killed = make_trainer(tmp_path, 6, period=2, hooks=[KillAfter(5)])
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    for name in ("model_0000002.pth", "model_0000004.pth"):
        truncate(tmp_path / name, keep)
    with pytest.raises(CheckpointError, match=r"no checkpoint in .* can be read.*model_0000004.pth: unreadable.*"
                                              r"model_0000002.pth: unreadable.*Delete them to train from the start"):
        make_trainer(tmp_path, 6, period=2).train()


class GradientProbe(ToyDetector):
    """Records the gradients the optimizer is about to apply (a pre-step hook sees them clipped)."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []


def test_clip_norm_bounds_the_global_gradient_norm_the_optimizer_applies(tmp_path):
    model = GradientProbe()
    trainer = make_trainer(tmp_path, 2, model=model, clip_norm=1e-3)  # far below the toy's gradient norm
    trainer.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: model.seen.append(torch.cat([p.grad.flatten() for p in model.parameters()]).clone())
    )
    trainer.train()
    assert len(model.seen) == 2
    assert [float(g.norm()) for g in model.seen] == pytest.approx([1e-3, 1e-3], rel=1e-4)
