"""Where a model's online per-frame time goes: a cProfile breakdown by component.

    python benchmarks/profile_online.py [--experiments ultradet fasterrcnn] [--profile experiments/profiles/cpu.yaml]
        [--sizes 160 256] [--frames 32] [--warmup 8] [--threads 1]

Each experiment at its profile (random weights in the profile's shapes, as ``bench_models.py``)
runs ``reset()`` + ``infer_frame`` over a synthetic video (``bench_models.synthetic_video``),
``--warmup`` frames untimed, then ``--frames`` frames under cProfile (a multiple of UltraDet's
``context_step``, so keyframes count at their true rate). Prints, per size, the milliseconds
per frame spent inside each component (cumulative time of its function: a component called from
another is also inside that one, e.g. the flow inside the context vectors) and the total.
cProfile adds a per-call overhead, so read the shares, not the absolute FPS (``bench_models.py``).
It also counts the RoIs that go through RoIAlign + res5 per frame and, with FasterRCNN among the
experiments, prints each model's FPS ratio floor: FasterRCNN's frame time plus only the extra RoIs'
RoIAlign + res5 time at FasterRCNN's cost per RoI, i.e. the best ratio a model could reach if
everything else it does were free (UltraDet's context RoIs, issue 20).
With ``PYTHONPATH`` pointing at another revision's ``ultradet`` (``git archive <rev> ultradet``)
it profiles that code: components a revision does not have are left out.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile

import torch

from bench_models import synthetic_video
from bench_train import load_offline
from ultradet.modeling import build_model
from ultradet.modeling.layers.res5 import RoIBoxEncoder

RES5 = "  RoIAlign + res5 (every call)"
ROIS = "RoIs through RoIAlign + res5"  # per frame

# (label, file suffix, function name): cumulative time of that function.
COMPONENTS = (
    ("backbone", "modeling/backbone.py", "forward"),
    ("proposals (RPN)", "proposal_generator/rpn.py", "forward"),
    ("RoI head, all", "roi_heads/buffered.py", "forward_frame"),
    ("RoI head, all (single frame)", "roi_heads/single_frame.py", "forward_frame"),
    ("  RoIAlign + res5 (every call)", "layers/res5.py", "forward"),
    ("  NTCA context vectors", "roi_heads/ntca.py", "_update_context"),
    ("    flow (per call, before the pair API)", "layers/flow.py", "forward"),
    ("    flow of pairs", "layers/flow.py", "pairs"),
    ("    flow inputs (once per frame)", "layers/flow.py", "prepare"),
    ("    warp", "layers/warp.py", "warp"),
    ("  temporal aggregation (window)", "roi_heads/ntca.py", "aggregate_window"),
    ("  geometric logits cache", "roi_heads/relation.py", "cache_geometry"),
    ("    geometric embedding (every call)", "layers/relation.py", "geometric_embedding"),
    ("    NTCA layers", "layers/ntca.py", "forward"),
    ("    relation layers", "layers/relation.py", "forward"),
    ("  Fast R-CNN predict + NMS", "roi_heads/base.py", "predict"),
)


def profile(name: str, profile_file: str, size: int, frames: int, warmup: int, weights_dir: str) -> dict[str, float]:
    """Milliseconds per frame in each of :data:`COMPONENTS` (absent ones left out) and ``total``."""
    cfg = load_offline(name, profile_file, weights_dir, {"input.fixed_area_test": float(size * size)})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video = synthetic_video(warmup + frames, size)
    rois = []
    for module in model.modules():
        if isinstance(module, RoIBoxEncoder):
            module.register_forward_pre_hook(lambda _, args: rois.append(sum(len(b) for b in args[1])))

    def run(clip):
        for frame in clip:
            model.infer_frame(frame, original_size=(size, size))

    model.reset()
    run(video[:warmup])
    rois.clear()
    profiler = cProfile.Profile()
    profiler.runcall(run, video[warmup:])
    stats = pstats.Stats(profiler).stats
    total = sum(tt for (file, _, fn), (_, _, tt, _, _) in stats.items())
    found = {"total": total}
    for label, suffix, function in COMPONENTS:
        cum = sum(ct for (file, _, fn), (_, _, _, ct, _) in stats.items() if file.endswith(suffix) and fn == function)
        if cum > 0:
            found[label] = cum
    return {**{k: 1000 * v / frames for k, v in found.items()}, ROIS: sum(rois) / frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["ultradet", "fasterrcnn"])
    parser.add_argument("--profile", default="experiments/profiles/cpu.yaml")
    parser.add_argument("--sizes", nargs="+", type=int, default=[160, 256])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as weights_dir:
        for size in args.sizes:
            measured = {name: profile(name, args.profile, size, args.frames, args.warmup, weights_dir) for name in args.experiments}
            for name, ms in measured.items():
                print(f"\n{name} at {size}x{size} ({args.profile}, {args.threads} thread(s)), ms per frame:")
                for label, value in ms.items():
                    print(f"  {label:<42} {value:8.1f}")
            if "fasterrcnn" in measured:
                print_floors(measured, size)


def print_floors(measured: dict[str, dict[str, float]], size: int) -> None:
    """Each model's FPS-ratio floor to FasterRCNN: ``t_F / (t_F + (n - n_F) * c)`` with ``t_F``
    FasterRCNN's ms per frame, ``n``/``n_F`` the RoIs through RoIAlign + res5 per frame and ``c``
    FasterRCNN's ms per such RoI."""
    base = measured["fasterrcnn"]
    per_roi = base[RES5] / base[ROIS]
    for name, ms in measured.items():
        extra = ms.get(ROIS, 0.0) - base[ROIS]
        if name != "fasterrcnn" and extra > 0:
            floor = base["total"] / (base["total"] + extra * per_roi)
            print(f"{name} at {size}: {extra:.1f} RoIs per frame more than FasterRCNN; FPS ratio <= {floor:.2f} even if all else were free")


if __name__ == "__main__":
    main()
