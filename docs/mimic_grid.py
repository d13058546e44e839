"""Draw lesions and their mimics side by side over time: ``docs/mimics.png``.

    python docs/mimic_grid.py [--out docs/mimics.png] [--size 256] [--seed 0]

Rows: two lesions, two ducts/vessels and two shadow artefacts from simulated sweeps
(``ultradet.data.synthetic``); columns: the same structure every ``--step`` frames (3), cropped around
it (the middle column is where it is largest). In any one column the rows look alike; along a
row, the lesion grows and shrinks, the duct keeps its size and slides sideways, the shadow
flickers in and out.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ultradet.data.synthetic import MimicRates, simulate_video  # noqa: E402

KINDS = {"lesion": "lesion", "duct": "duct / vessel (mimic)", "shadow": "shadow artefact (mimic)"}


def collect(seed: int, size: int, num_frames: int, videos: int) -> dict:
    """(video, instance, kind) -> {frame index: (image, object)} over ``videos`` simulated sweeps."""
    found = defaultdict(dict)
    for v in range(videos):
        label = "malignant" if v % 2 else "benign"
        frames = simulate_video(seed + v, size=size, num_frames=num_frames, label=label,
                                mimics=MimicRates(duct_rate=1.0, shadow_rate=2.0))
        for t, (image, objects) in enumerate(frames):
            for obj in objects:
                found[(v, obj.instance, obj.kind)][t] = (image, obj)
    return found


def pick(found: dict, kind: str, count: int) -> list[dict]:
    """``count`` typical structures of ``kind``: the largest among those seen for a typical time
    (at most the median number of frames of their kind), so the grid shows neither outliers
    nor specks."""
    tracks = [frames for (_, _, k), frames in found.items() if k == kind]
    typical = [t for t in tracks if len(t) <= np.median([len(u) for u in tracks])]
    return sorted(typical, key=lambda t: max(obj.area for _, obj in t.values()), reverse=True)[:count]


def draw(tracks: dict[str, list[dict]], columns: int, step: int, size: int, out: Path) -> None:
    rows = [(kind, track) for kind, ts in tracks.items() for track in ts]
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.7 * len(rows)), squeeze=False)
    for r, (kind, track) in enumerate(rows):
        peak = max(track, key=lambda t: track[t][1].area)
        x, y, w, h = track[peak][1].box
        half = int(max(size // 6, 0.65 * max(w, h)))  # crop half-width, pixels: the whole structure
        cx, cy = int(x + w / 2), int(y + h / 2)
        for c in range(columns):
            t = peak + (c - columns // 2) * step
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            any_image = next(iter(track.values()))[0]
            image = track[t][0] if t in track else None
            crop_src = image if image is not None else np.zeros_like(any_image)
            y0, x0 = max(cy - half, 0), max(cx - half, 0)
            ax.imshow(crop_src[y0:y0 + 2 * half, x0:x0 + 2 * half], cmap="gray", vmin=0, vmax=255)
            if t in track:
                bx, by, bw, bh = track[t][1].box
                color = "lime" if kind == "lesion" else "orange"
                ax.add_patch(plt.Rectangle((bx - x0, by - y0), bw, bh, fill=False, lw=0.8, color=color))
            else:
                ax.text(half, half, "absent" if image is None else "", color="w", ha="center", fontsize=7)
            if r == 0:
                ax.set_title(f"t {'+' if c >= columns // 2 else ''}{(c - columns // 2) * step}", fontsize=8)
            if c == 0:
                ax.set_ylabel(KINDS[kind], fontsize=7)
    fig.suptitle("Simulated lesions (green) and mimics (orange) over time", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("mimics.png"))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=int, default=3, help="frames between columns")
    args = p.parse_args(argv)
    found = collect(args.seed, args.size, num_frames=72, videos=6)
    draw({kind: pick(found, kind, 2) for kind in KINDS}, columns=7, step=args.step, size=args.size, out=args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
