"""Frames per second of the embedded-dataset generator at the default frame size.

    python benchmarks/bench_synthetic.py [--videos 6] [--size 256] [--out benchmarks/results/bench_synthetic.json]

Times `generate_dataset` end to end (simulation + PNG encoding + writing) into a temporary
folder, and writes the number as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from ultradet.data import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", default="benchmarks/results/bench_synthetic.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = generate_dataset(Path(tmp) / "d", num_videos=args.videos, test_videos=0, size=args.size,
                                seed=0, progress=False)
        seconds = time.perf_counter() - start
        frames = len(json.loads((root / "trainval.json").read_text())["images"])
    result = {"frames": frames, "seconds": round(seconds, 3), "frames_per_second": round(frames / seconds, 1),
              "size": args.size, "machine": platform.processor() or platform.machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"synthetic generator: {result['frames_per_second']} frames/s "
          f"({frames} frames of {args.size}x{args.size} in {seconds:.2f} s) -> {args.out}")


if __name__ == "__main__":
    main()
