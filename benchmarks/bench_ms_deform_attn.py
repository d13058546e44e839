"""Forward + backward time of the pure-PyTorch multi-scale deformable attention against dense
multi-head attention, as the encoder self-attention of Deformable DETR over a res4 map.

    python benchmarks/bench_ms_deform_attn.py [--sizes 60 10] [--batches 1 16] [--repeats 3]
        [--warmup 1] [--threads 1] [--device cpu] [--out benchmarks/results/bench_ms_deform_attn.json]

Each call is one encoder self-attention over all ``size x size`` tokens of a one-level map (the
DeformDETR row, baselines spec 3.1: d_model 256, 8 heads, 4 points): ``MSDeformAttn`` with the
pixel centres as reference points, and ``nn.MultiheadAttention(256, 8, batch_first=True)`` over
the same tokens (``need_weights=False``, so PyTorch's fused scaled-dot-product kernels may run),
then ``backward()`` of the output's sum into the weights and the input. Sizes: 60 x 60 is about
the paper's res4 map (948 px frames at stride 16), 10 x 10 the CPU profile's (160 px frames);
batch 1 = one frame, 16 = the frames of a training clip. ``--warmup`` untimed calls, then
``--repeats`` timed ones (CUDA synchronised around each); the table gives the median ms per call.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from ultradet.modeling.layers.ms_deform_attn import MSDeformAttn

D_MODEL, HEADS, POINTS = 256, 8, 4


def pixel_centres(size: int, batch: int, device: torch.device) -> torch.Tensor:
    """``FloatTensor[batch, size*size, 1, 2]``: each token's normalised (x, y) pixel centre, row-major."""
    centres = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(1, size * size, 1, 2).expand(batch, -1, -1, -1)


def timed_calls(step, tokens: torch.Tensor, module: nn.Module, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``step`` (forward + backward), after ``warmup`` calls."""
    synchronise = torch.cuda.synchronize if tokens.device.type == "cuda" else (lambda: None)
    times = []
    for call in range(warmup + repeats):
        module.zero_grad(set_to_none=True)
        tokens.grad = None
        synchronise()
        start = time.perf_counter()
        step().sum().backward()
        synchronise()
        if call >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def measure(size: int, batch: int, warmup: int, repeats: int, device: torch.device) -> dict:
    """Median and all ms per call of both attentions on one batch of ``size x size`` tokens."""
    torch.manual_seed(0)
    tokens = torch.randn(batch, size * size, D_MODEL, device=device, requires_grad=True)
    deform = MSDeformAttn(d_model=D_MODEL, n_levels=1, n_heads=HEADS, n_points=POINTS).to(device)
    dense = nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True).to(device)
    shapes = torch.tensor([[size, size]], device=device)
    starts = torch.zeros(1, dtype=torch.long, device=device)
    ref = pixel_centres(size, batch, device)
    deform_ms = timed_calls(lambda: deform(tokens, ref, tokens, shapes, starts), tokens, deform, warmup, repeats)
    dense_ms = timed_calls(lambda: dense(tokens, tokens, tokens, need_weights=False)[0], tokens, dense, warmup, repeats)
    return {
        "size": size, "tokens": size * size, "batch": batch,
        "msdeformattn_ms": statistics.median(deform_ms), "msdeformattn_runs_ms": deform_ms,
        "multihead_ms": statistics.median(dense_ms), "multihead_runs_ms": dense_ms,
    }


def table(rows: list[dict]) -> str:
    lines = ["| map | tokens | batch | MSDeformAttn ms | MultiheadAttention ms | dense / deformable |", "|" + "---|" * 6]
    for r in rows:
        lines.append(f"| {r['size']}x{r['size']} | {r['tokens']} | {r['batch']} | {r['msdeformattn_ms']:.1f} | "
                     f"{r['multihead_ms']:.1f} | {r['multihead_ms'] / r['msdeformattn_ms']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[60, 10], help="res4 map side in tokens")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16], help="frames per call")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/bench_ms_deform_attn.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [measure(size, batch, args.warmup, args.repeats, device) for size in args.sizes for batch in args.batches]
    result = {
        "device": args.device if device.type == "cpu" else torch.cuda.get_device_name(device),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__, "torch_threads": args.threads,
        "warmup": args.warmup, "repeats": args.repeats,
        "d_model": D_MODEL, "heads": HEADS, "points": POINTS, "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
