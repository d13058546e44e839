"""Writing a simulated dataset in the CVA-BUS layout: video ids balanced over the patient folds,
the splits' plans, PNG frames and COCO-VID JSONs, byte-identical for the same arguments and
written atomically (see :mod:`ultradet.data.synthetic`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ultradet import mimic_sidecar
from ultradet.data.synthetic.render import Renderer, SimulatedObject
from ultradet.data.synthetic.scene import MIMIC_KINDS, MimicRates, plan_video

_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]  # fixed: byte-identical output; fast
CATEGORIES = [{"id": 1, "name": "lesion"}]


# ------------------------------------------------------------------------------------- dataset IO
def _video_ids(rng: np.random.Generator, count: int, taken: set[str], num_folds: int) -> list[str]:
    """``count`` fresh 16-hex ids; with ``num_folds`` > 0, ids are redrawn until their patient fold
    (sha256 rule, spec section 1) cycles 0, 1, ..., so every fold gets videos."""
    ids = []
    while len(ids) < count:
        key = rng.bytes(8).hex()
        fold_ok = num_folds <= 0 or int(hashlib.sha256(key.encode()).hexdigest(), 16) % num_folds == len(ids) % num_folds
        if key not in taken and fold_ok:
            taken.add(key)
            ids.append(key)
    return ids




def _write_split(
    root: Path, split_videos: list[tuple[str, str, int, int]], size: int, mimics: MimicRates, bar: tqdm
) -> tuple[dict, list[dict]]:
    """Render and write one split's frames; returns its COCO-VID dict (only lesions are annotated)
    and the ``videos`` of its mimic sidecar (:mod:`ultradet.mimic_sidecar`)."""
    coco = {"videos": [], "images": [], "annotations": [], "categories": CATEGORIES}
    sidecar_videos = []
    for video_id, (key, label, num_frames, video_seed) in enumerate(split_videos, start=1):
        rng = np.random.default_rng(video_seed)
        renderer = Renderer(plan_video(rng, size, num_frames, label, mimics), rng)
        name = f"{label}/{key}"
        folder = root / "rawframes" / name
        folder.mkdir(parents=True)
        coco["videos"].append({"id": video_id, "name": name})
        tracks: dict[int, dict] = {}  # instance -> the sidecar's entry of one mimic
        sidecar_videos.append({"video_id": video_id, "name": name, "mimics": tracks})
        for t in range(num_frames):
            image, objects = renderer.frame(t)
            file_name = f"{name}/{t:06d}.png"
            ok, png = cv2.imencode(".png", image, _PNG_PARAMS)
            if not ok:
                raise RuntimeError(f"PNG encoding failed for {file_name}")
            (root / "rawframes" / file_name).write_bytes(png.tobytes())
            image_id = len(coco["images"]) + 1
            coco["images"].append(
                {"id": image_id, "video_id": video_id, "frame_id": t, "file_name": file_name,
                 "height": size, "width": size}
            )
            for obj in objects:
                if obj.kind != "lesion":
                    _record_mimic(tracks, obj, t)
                    continue
                coco["annotations"].append(
                    {"id": len(coco["annotations"]) + 1, "image_id": image_id, "video_id": video_id,
                     "category_id": 1, "instance_id": video_id * 100 + obj.instance, "bbox": obj.box,
                     "area": obj.box[2] * obj.box[3], "iscrowd": 0}
                )
            bar.update(1)
        sidecar_videos[-1]["mimics"] = [tracks[i] for i in sorted(tracks)]
    return coco, sidecar_videos


def _record_mimic(tracks: dict[int, dict], obj: SimulatedObject, t: int) -> None:
    """Add frame ``t``'s box of the mimic ``obj`` (COCO xywh -> XYXY pixels) to its sidecar entry."""
    x, y, w, h = obj.box
    entry = tracks.setdefault(obj.instance, {"instance": obj.instance, "kind": obj.kind, "frames": {}})
    entry["frames"][str(t)] = [x, y, x + w, y + h]


def _plan_splits(
    rng: np.random.Generator, num_videos: int, test_videos: int, min_frames: int, max_frames: int, num_folds: int
) -> dict[str, list[tuple[str, str, int, int]]]:
    taken: set[str] = set()
    plan = {}
    for split, count, folds in (("trainval", num_videos, num_folds), ("test", test_videos, 0)):
        ids = _video_ids(rng, count, taken, folds)
        malignant = np.zeros(count, bool)
        malignant[: round(0.6 * count)] = True  # CVA-BUS is ~60 % malignant
        rng.shuffle(malignant)
        frames = rng.integers(min_frames, max_frames + 1, count)
        seeds = rng.integers(0, 2**63, count)
        plan[split] = [
            (key, "malignant" if m else "benign", int(n), int(sd))
            for key, m, n, sd in zip(ids, malignant, frames, seeds)
        ]
    return plan


def generate_dataset(
    out_dir: str | Path,
    *,
    num_videos: int = 32,
    test_videos: int = 8,
    min_frames: int = 48,
    max_frames: int = 96,
    size: int = 256,
    seed: int = 0,
    num_folds: int = 4,
    duct_rate: float = MimicRates.duct_rate,
    shadow_rate: float = MimicRates.shadow_rate,
    shadow_frames: tuple[int, int] = MimicRates.shadow_frames,
    progress: bool = True,
) -> Path:
    """Simulate a CVA-BUS-style dataset into ``out_dir`` (replacing it atomically).

    Layout: ``rawframes/{benign,malignant}/<16-hex id>/NNNNNN.png`` (8-bit grayscale, square
    ``size`` x ``size``) plus ``trainval.json`` and ``test.json`` in the COCO-VID schema of spec
    section 1 (bbox = xywh absolute pixels, category 1 "lesion", ``instance_id`` =
    ``100 * video id + lesion number``, unique within a split), and beside each the mimic
    sidecar ``trainval_mimics.json`` / ``test_mimics.json``: every mimic's kind and per-frame box
    (:mod:`ultradet.mimic_sidecar`; not ground truth, only the evaluation's FP analysis reads
    it). Recording the mimics draws nothing: frames and ground truth are those of a generator
    without the sidecar.

    Args:
        out_dir: destination folder; an existing one is replaced only once the new one is complete.
        num_videos: videos in ``trainval.json``; their ids are drawn so that the patient folds
            (``sha256(id) % num_folds``) take turns, i.e. every fold holds videos.
        test_videos: videos in ``test.json`` (ids never repeat a trainval id).
        min_frames, max_frames: inclusive range of frames per video.
        size: frame side, pixels.
        seed: master seed; same arguments give byte-identical files.
        num_folds: fold count used to balance trainval ids (0 disables balancing).
        duct_rate, shadow_rate, shadow_frames: how often lesion mimics occur (:class:`MimicRates`).
        progress: show a tqdm bar over frames.

    Returns:
        ``Path(out_dir)``.

    Raises:
        ValueError: on non-positive counts/sizes or ``min_frames > max_frames``.
    """
    if num_videos < 1 or test_videos < 0 or not 1 <= min_frames <= max_frames or size < 16:
        raise ValueError(
            f"invalid synthetic dataset parameters: num_videos={num_videos} (>=1), test_videos={test_videos} "
            f"(>=0), min_frames={min_frames} <= max_frames={max_frames} (>=1), size={size} (>=16)"
        )
    if duct_rate < 0 or shadow_rate < 0 or not 1 <= shadow_frames[0] <= shadow_frames[1]:
        raise ValueError(
            f"invalid mimic parameters: duct_rate={duct_rate} (>=0), shadow_rate={shadow_rate} (>=0), "
            f"shadow_frames={tuple(shadow_frames)} (1 <= min <= max)"
        )
    mimics = MimicRates(duct_rate, shadow_rate, tuple(shadow_frames))
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    plan = _plan_splits(rng, num_videos, test_videos, min_frames, max_frames, num_folds)
    total = sum(n for videos in plan.values() for _, _, n, _ in videos)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tqdm(total=total, desc=f"simulating {out_dir.name}", unit="frame", disable=not progress) as bar:
            for split, videos in plan.items():
                coco, sidecar_videos = _write_split(tmp, videos, size, mimics, bar)
                (tmp / f"{split}.json").write_text(json.dumps(coco, separators=(",", ":")))
                sidecar = mimic_sidecar.sidecar_dict(split, MIMIC_KINDS, sidecar_videos)
                mimic_sidecar.sidecar_path(tmp, split).write_text(mimic_sidecar.dumps(sidecar))
        _replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` onto ``target``; an old ``target`` is moved aside first, then deleted."""
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
