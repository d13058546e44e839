"""The Faster R-CNN-based video baselines of the paper table (baselines spec 1.2-1.5): RelationNet,
FGFA, SELSA and MEGA, end to end on tiny clips, plus hand-computed checks of their aggregation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from modeltoy import (
    SIZE,
    TINY,
    lesion_clip,
    overfit_losses,
    run_online,
    same_detections,
    same_when_later_frames_change,
    tiny_config,
)
from roitoy import HEAD_KWARGS, video_frames

from ultradet.config import ConfigError, load_experiment
from ultradet.modeling import TemporalRCNN, build_model
from ultradet.modeling.layers.fgfa import aggregation_weights
from ultradet.modeling.layers.relation import geometric_embedding
from ultradet.modeling.layers.selsa import SELSALayer, SELSALayers
from ultradet.modeling.roi_heads import MEGAROIHeads

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
PROFILES = EXPERIMENTS / "profiles"
BASELINES = ("relationnet", "fgfa", "selsa", "mega")
VIDEO = ("fgfa", "selsa", "mega")


def _model(name: str, seed: int = 0, **overrides) -> TemporalRCNN:
    torch.manual_seed(seed)
    return build_model(tiny_config(EXPERIMENTS / f"{name}.yaml", **overrides))


def _video(frames: int, seed: int) -> list[torch.Tensor]:
    return list(lesion_clip(frames, seed)["images"])


# ------------------------------------------------------------------------------- whole models
@pytest.mark.parametrize("name", BASELINES)
def test_inference_is_causal_bit_for_bit(name):
    model = _model(name).eval()
    video, changed = _video(8, seed=0), _video(8, seed=1)
    t = 5  # past MEGA's local window (4 frames here): its memory is in use
    same = same_when_later_frames_change(model, video, changed, t)
    assert all(same[: t + 1]) and not all(same[t + 1 :])


@pytest.mark.parametrize("name", BASELINES)
def test_reset_isolates_videos(name):
    model = _model(name).eval()
    first, second = _video(6, seed=2), _video(6, seed=3)
    fresh = run_online(model, second)
    run_online(model, first)
    assert all(same_detections(a, b) for a, b in zip(run_online(model, second), fresh))
    if name in VIDEO:  # without reset the previous video is temporal context
        leaked = [model.infer_frame(image, original_size=(SIZE, SIZE)) for image in second]
        assert not all(same_detections(a, b) for a, b in zip(leaked, fresh))


@pytest.mark.parametrize("name", BASELINES)
def test_overfits_one_clip(name):
    history = overfit_losses(_model(name).train(), lesion_clip(3))
    assert history[-1] <= 0.5 * history[0], history


# --------------------------------------------------------------------------------------- SELSA
def test_selsa_attention_and_output_match_a_brute_force_loop():
    torch.manual_seed(0)
    layer = SELSALayer(d_model=8).double()
    for linear in (layer.query, layer.key):  # larger weights than the N(0, 0.01) init: non-uniform A
        torch.nn.init.normal_(linear.weight)
    x = torch.randn(5, 8, dtype=torch.float64)
    mask = torch.tensor([True, False, True, True, True])
    with torch.no_grad():
        q, k, v, t = layer.query(x), layer.key(x), layer.value(x), layer.transform(x)
        weights = layer.attention(x, mask)
        output = layer(x, mask)
    for i in range(5):
        logits = [float(q[i] @ k[j]) / math.sqrt(8) for j in range(5)]
        exps = [math.exp(logits[j]) if mask[j] else 0.0 for j in range(5)]
        expected = [e / sum(exps) for e in exps]
        assert weights[i].tolist() == pytest.approx(expected, rel=1e-9, abs=1e-12)
        mixed = sum(expected[j] * v[j] for j in range(5))
        with torch.no_grad():
            torch.testing.assert_close(output[i], t[i] + layer.output(mixed))
    assert weights[:, 1].abs().max() < 1e-12  # masked key


def test_selsa_layers_queries_are_the_rows_of_the_full_pass():
    torch.manual_seed(0)
    layers = SELSALayers(d_model=16, num_layers=2)
    x = torch.randn(7, 16)
    torch.testing.assert_close(layers(x, queries=slice(4, 7)), layers(x)[4:])


def test_selsa_identity_transform_starts_as_the_input_plus_the_aggregation():
    torch.manual_seed(0)
    layer = SELSALayer(d_model=8, transform_init="identity")
    x = torch.randn(5, 8)
    mask = torch.tensor([True, False, True, True, True])
    with torch.no_grad():
        expected = x + layer.output(layer.attention(x, mask) @ layer.value(x))
        torch.testing.assert_close(layer(x, mask), expected)
    assert torch.equal(layer.transform.weight, torch.eye(8)) and not layer.transform.bias.any()


@pytest.mark.parametrize(("profile", "start"), [("paper.yaml", "normal"), ("smoke.yaml", "normal"), ("cpu.yaml", "identity")])
def test_selsa_starts_as_the_original_unless_it_fine_tunes_a_pretrained_detector(profile, start):
    assert load_experiment("selsa", experiments_dir=EXPERIMENTS, profile=PROFILES / profile).model.selsa.transform_init == start


def test_selsa_unknown_transform_init_is_refused():
    with pytest.raises(ValueError, match="transform_init"):
        SELSALayer(d_model=8, transform_init="eye")


def test_selsa_fine_tuned_under_the_cpu_profile_starts_as_its_pretrained_detector(tmp_path):
    """The defect behind SELSA's AP50 78.4 on the CPU profile (docs/reproduction.md, SELSA):
    with the original's start of the transform (W ~ N(0, 0.01^2)) the layers inserted between the
    pretrained res5 vectors and the pretrained predictor hide every RoI from it (all scores ~0.5).
    Under the CPU profile SELSA must begin as the detector it fine-tunes (the pipeline's
    pretrain -> fine-tune path: cpu_pretrain.yaml, then cpu.yaml with model.weights)."""
    torch.manual_seed(0)
    pretrain = PROFILES / "cpu_pretrain.yaml"
    pretrained = build_model(load_experiment("fasterrcnn", experiments_dir=EXPERIMENTS, profile=pretrain, overrides=TINY))
    overfit_losses(pretrained.train(), lesion_clip(3), steps=20)
    torch.save({"model": pretrained.state_dict()}, tmp_path / "model_final.pth")
    fine_tune = {**TINY, "model.weights": str(tmp_path / "model_final.pth")}

    def scores(name: str) -> list[torch.Tensor]:
        cfg = load_experiment(name, experiments_dir=EXPERIMENTS, profile=PROFILES / "cpu.yaml", overrides=fine_tune)
        torch.manual_seed(1)  # the SELSA layers' own random start
        with torch.no_grad():
            return [d["scores"].sort().values for d in run_online(build_model(cfg).eval(), _video(3, seed=0))]

    single_frame, selsa = scores("fasterrcnn"), scores("selsa")
    assert min(float(s.min()) for s in single_frame) < 0.2  # informative scores, not the blind ~0.5
    for ours, theirs in zip(selsa, single_frame):
        torch.testing.assert_close(ours, theirs, atol=0.03, rtol=0)


# ---------------------------------------------------------------------------------------- FGFA
def test_fgfa_cosine_weights_are_a_per_pixel_softmax_of_cosines():
    current = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])  # [C=2, h=1, w=2]: (1, 0) and (0, 2)
    references = torch.tensor(
        [
            [[[3.0, 0.0]], [[0.0, 1.0]]],  # (3, 0), (0, 1): cos 1, 1
            [[[0.0, 1.0]], [[1.0, 0.0]]],  # (0, 1), (1, 0): cos 0, 0
            [[[-1.0, 1.0]], [[0.0, -1.0]]],  # (-1, 0), (1, -1): cos -1, -1/sqrt(2)
        ]
    )
    w = aggregation_weights(current, references)
    first = [math.exp(1), math.exp(0), math.exp(-1)]
    second = [math.exp(1), math.exp(0), math.exp(-1 / math.sqrt(2))]
    assert w[:, 0, 0].tolist() == pytest.approx([e / sum(first) for e in first], rel=1e-6)
    assert w[:, 0, 1].tolist() == pytest.approx([e / sum(second) for e in second], rel=1e-6)


class ConstantFlow(torch.nn.Module):
    """A flow estimator stub: the same (dx, dy) in res4 cells everywhere."""

    def __init__(self, dx: float, dy: float):
        super().__init__()
        self.dx, self.dy = dx, dy

    def forward(self, current, context, grid_size):
        flow = torch.tensor([self.dx, self.dy]).view(1, 2, 1, 1).expand(len(current), 2, *grid_size)
        return flow, None


def test_fgfa_warps_a_known_shift_onto_the_current_frame():
    model = _model("fgfa").eval()
    model.flow = ConstantFlow(1.0, 0.0)
    g = torch.Generator().manual_seed(0)
    current = torch.randn(1, 256, 3, 6, generator=g)  # R18 res4: 256 channels
    # The reference saw the content one cell further right: ref[x + 1] = current[x].
    reference = torch.cat([torch.randn(1, 256, 3, 1, generator=g), current[..., :-1]], dim=-1)
    images = torch.zeros(2, 3, 48, 96)
    with torch.no_grad():
        aggregated = model.aggregate(images[:1], current, images[1:], reference)
    # Warped reference == current (but for the last column, border-padded): the weighted mean
    # of two identical vectors is that vector, whatever the weights.
    torch.testing.assert_close(aggregated[..., :-1], current[..., :-1])
    model.zero_flow = True  # the original: reference not warped, so the mean differs
    with torch.no_grad():
        unwarped = model.aggregate(images[:1], current, images[1:], reference)
        embeddings = model.embed(torch.cat([current, reference]))
    w = aggregation_weights(embeddings[0], embeddings)
    torch.testing.assert_close(unwarped[0], w[0] * current[0] + w[1] * reference[0])
    assert not torch.allclose(unwarped[..., :-1], current[..., :-1])


def test_fgfa_test_buffer_holds_the_previous_frames_only():
    model = _model("fgfa").eval()  # interval_pre_test 3
    seen = []
    model.aggregate = lambda image, features, ref_images, ref_features: (seen.append(len(ref_images)), features)[1]
    run_online(model, _video(6, seed=0))
    assert seen == [0, 1, 2, 3, 3, 3]


# ---------------------------------------------------------------------------------------- MEGA
@pytest.mark.parametrize(("profile", "clip_frames"), [(None, 16), ("cpu.yaml", 10), ("smoke.yaml", 9)])
def test_mega_trains_on_the_memory_sampler(profile, clip_frames):
    cfg = load_experiment("mega", experiments_dir=EXPERIMENTS, profile=profile and PROFILES / profile)
    sampler = cfg.sampler
    assert (sampler.name, sampler.memory_interval, sampler.memory_frames) == ("memory", 10, 6)  # baselines spec 1.5
    assert sampler.memory_frames == cfg.model.mega.memory_frames and sampler.clip_frames == clip_frames


def test_mega_memory_count_must_be_the_samplers():
    with pytest.raises(ConfigError, match=r"sampler.memory_frames \(6\) must equal model.mega.memory_frames \(4\)"):
        load_experiment("mega", experiments_dir=EXPERIMENTS, overrides={"model.mega.memory_frames": 4})
    clip = load_experiment("mega", experiments_dir=EXPERIMENTS, overrides={"sampler.name": "clip", "model.mega.memory_frames": 4})
    assert clip.sampler.clip_frames == 10  # the plain sampler: no memory part; the head takes the first 4 frames


def test_mega_memory_after_n_frames_is_the_frames_before_the_local_window():
    torch.manual_seed(0)
    head = MEGAROIHeads(**HEAD_KWARGS, interval_pre_test=2, memory_frames=2).eval()
    video = video_frames(7, 4, seed=0)
    head.reset()
    with torch.no_grad():
        for t, frame in enumerate(video):
            memory = head.memory()
            # Before frame t: the local window is t-2..t, the memory frames t-4 and t-3.
            expected = [i for i in (t - 4, t - 3) if i >= 0]
            assert [e.boxes.data_ptr() for e in memory] == [video[i][1]["boxes"].data_ptr() for i in expected]
            head.forward_frame(*frame)
        # Memory after 7 frames: frames 3 and 4, layer 0 = their raw RoI vectors.
        memory = head.memory()
        for entry, (features, proposals, _) in zip(memory, video[3:5]):
            torch.testing.assert_close(entry.layers[0], head.box_encoder(features, [proposals["boxes"]]))
        # Frame 0 was alone: its layer-1 input is relation layer 0 over its own RoIs.
        head.reset()
        head.forward_frame(*video[0])
        (entry,) = head.cache
        vectors = head.box_encoder(video[0][0], [video[0][1]["boxes"]])
        expected = head.relation.layers[0](vectors, geometric_embedding(entry.boxes, entry.boxes, 32))
    torch.testing.assert_close(entry.layers[1], expected)
