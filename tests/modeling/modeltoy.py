"""Tiny whole-model inputs for the meta-architecture tests: R18, 64 x 64 frames, small heads."""

from __future__ import annotations

import torch

from ultradet.config import ExperimentConfig, load_config

SIZE = 64
HEADS = ("single_frame", "relation", "ntca")
GENERATORS = ("rpn", "poto")

# The smallest settings each component accepts that still exercise every code path: relation
# and NTCA buffers of 3 earlier frames, a keyframe every 2 frames, a 1-conv POTO tower.
TINY = {
    "model.backbone.depth": 18,
    "model.roi_heads.d_model": 32,
    "model.roi_heads.pooler_resolution": 4,
    "model.relation.relation_heads": 4,
    "model.temporal.interval_pre_test": 3,
    "model.ntca.context_step": 2,
    "model.poto.num_convs": 1,
}
# A small transformer for every DETR-family model, as ``tiny_config`` keyword overrides.
TINY_DETR = dict(model__detr__d_model=32, model__detr__num_heads=4, model__detr__dim_feedforward=64, model__detr__num_queries=8)


def tiny_config(*files, **overrides) -> ExperimentConfig:
    """``load_config(*files)`` with :data:`TINY` and ``overrides`` (dotted keys, ``__`` for ``.``)."""
    extra = {key.replace("__", "."): value for key, value in overrides.items()}
    return load_config(*files, overrides={**TINY, **extra})


def lesion_clip(
    frames: int = 3, seed: int = 0, empty_frames: tuple[int, ...] = (), *, size: int = SIZE, lesion: int = 24
) -> dict:
    """A clip dict (``docs/architecture.md``) of dark speckle ``size`` x ``size`` frames with one
    bright ``lesion`` x ``lesion`` square drifting right by 2 pixels a frame; frames listed in
    ``empty_frames`` have no lesion and no GT box."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(frames, 3, size, size, generator=g) * 60
    top = (size - lesion) // 2
    boxes, labels = [], []
    for t in range(frames):
        if t in empty_frames:
            boxes.append(torch.zeros(0, 4))
        else:
            x = top - 6.0 + 2 * t
            images[t, :, top : top + lesion, int(x) : int(x) + lesion] += 150
            boxes.append(torch.tensor([[x, float(top), x + lesion, float(top + lesion)]]))
        labels.append(torch.zeros(len(boxes[-1]), dtype=torch.long))
    return {"images": images, "boxes": boxes, "labels": labels, "video_id": 0, "frame_ids": torch.arange(frames)}


def overfit_history(model, clip: dict, steps: int = 30, lr: float = 1e-3) -> list[dict[str, float]]:
    """Each named training loss of ``model`` at each of ``steps`` AdamW steps on the same ``clip``."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    history = []
    for _ in range(steps):
        losses = model([clip])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append({name: float(value.detach()) for name, value in losses.items()})
    return history


def overfit_losses(model, clip: dict, steps: int = 30, lr: float = 1e-3) -> list[float]:
    """Total training loss of ``model`` at each of ``steps`` AdamW steps on the same ``clip``."""
    return [sum(step.values()) for step in overfit_history(model, clip, steps, lr)]


def run_online(model, frames: list[torch.Tensor]) -> list[dict]:
    """One video through ``model`` as the evaluation runs it: ``reset()``, ``infer_frame`` per
    frame (original size SIZE x SIZE), then what ``flush()`` still owes; one output per frame."""
    model.reset()
    outputs = [model.infer_frame(image, original_size=(SIZE, SIZE)) for image in frames]
    return [o for o in outputs if o is not None] + model.flush()


def same_detections(a: dict, b: dict) -> bool:
    """Whether two frames' detections are bit-identical (boxes, scores, labels)."""
    return all(torch.equal(a[k], b[k]) for k in ("boxes", "scores", "labels"))


def same_when_later_frames_change(model, video: list[torch.Tensor], changed: list[torch.Tensor], t: int) -> list[bool]:
    """Per frame of ``video``, whether ``model``'s online output is bit-identical when every frame
    after ``t`` is replaced by ``changed``'s (a causal model: True up to ``t``)."""
    original = run_online(model, video)
    altered = run_online(model, video[: t + 1] + changed[t + 1 :])
    assert len(original) == len(altered) == len(video)
    return [same_detections(o, a) for o, a in zip(original, altered)]
