"""The mimic sidecar: where the unannotated lesion mimics of a simulated dataset lie, frame by frame.

The embedded dataset's generator (:mod:`ultradet.data.synthetic`) draws lesion mimics, ducts and
vessels (``"duct"``) and shadow/refraction artefacts (``"shadow"``), that are never annotated.
It records them in ``<split>_mimics.json`` next to the split's ``<split>.json``, so that the
evaluation can tell a false positive on a mimic from one on plain tissue
(:mod:`ultradet.evaluation.fp_causes`). It is not ground truth: nothing that trains or runs a
detector reads it. A dataset without it (CVA-BUS) is evaluated as before.

Format (a JSON object; written with fixed formatting, so the same dataset gives the same bytes)::

    {"format": "ultradet-mimics", "version": 1, "split": "trainval",
     "kinds": ["duct", "shadow"],
     "videos": [
       {"video_id": 1, "name": "benign/0123456789abcdef",
        "mimics": [
          {"instance": 2, "kind": "duct",
           "frames": {"0": [x1, y1, x2, y2], "1": [x1, y1, x2, y2], ...}}]}]}

- ``kinds``: every kind the generator can draw, present in the split or not (the evaluation's
  causes are ``"mimic:<kind>"`` for each);
- ``videos``: every video of ``<split>.json``, with its ``id`` and ``name`` there (a video
  without mimics has ``"mimics": []``);
- ``instance``: the structure's number within its video (lesions and mimics share the
  numbering; a lesion's ``instance_id`` is ``100 * video_id + instance``);
- ``frames``: ``frame_id`` (``images[].frame_id`` of ``<split>.json``, as a decimal string: JSON
  keys are strings) -> the box of the mimic's visible cross-section in that frame, XYXY absolute
  pixels of the written frame. A frame is listed where the cross-section passes the visibility
  rule of a lesion's box (:mod:`ultradet.data.synthetic.render`), i.e. where an annotator would
  have boxed it had it been a lesion.

Like :mod:`ultradet.box_rules` this module imports nothing from the project beyond
:mod:`ultradet.errors`, so the generator and the evaluation (numpy only) share it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ultradet.errors import UserError

FORMAT = "ultradet-mimics"
VERSION = 1
SUFFIX = "_mimics.json"


class MimicSidecarError(UserError, ValueError):
    """A mimic sidecar is malformed or belongs to another dataset; the message names the file's
    entry (video, mimic, frame) and what is wrong."""


def sidecar_path(root: str | Path, split: str) -> Path:
    """``<root>/<split>_mimics.json``, the sidecar of ``<root>/<split>.json``."""
    return Path(root) / f"{split}{SUFFIX}"


def sidecar_dict(split: str, kinds: tuple[str, ...], videos: list[dict]) -> dict:
    """The sidecar object (module docstring) of one split.

    Args:
        split: the split's name (``"trainval"``).
        kinds: every mimic kind the generator can draw.
        videos: one ``{"video_id", "name", "mimics": [{"instance", "kind", "frames": {frame_id:
            [x1, y1, x2, y2]}}]}`` per video of the split, in its order; ``frame_id`` keys may
            be ints (they are written as strings).
    """
    return {"format": FORMAT, "version": VERSION, "split": split, "kinds": list(kinds), "videos": videos}


def dumps(sidecar: dict) -> str:
    """The sidecar as compact JSON with fixed formatting (frame keys as decimal strings)."""
    return json.dumps(sidecar, separators=(",", ":"))


@dataclass(frozen=True)
class MimicBoxes:
    """Every mimic box of a sidecar, flat.

    Attributes:
        kinds: every mimic kind of the dataset (the sidecar's ``kinds``), sorted.
        videos: ``{video_id: name}`` of every video the sidecar covers.
        video_id: int64 (M,), frame_id: int64 (M,): where each box lies.
        kind: int64 (M,), index into ``kinds``.
        boxes: float64 (M, 4), XYXY absolute pixels.
    """

    kinds: tuple[str, ...]
    videos: dict[int, str]
    video_id: np.ndarray
    frame_id: np.ndarray
    kind: np.ndarray
    boxes: np.ndarray


def _fail(where: str, problem: str) -> MimicSidecarError:
    return MimicSidecarError(f"mimic sidecar {where}: {problem}")


def _box(value, where: str) -> list[float]:
    ok = isinstance(value, list) and len(value) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )
    if not ok or not (value[0] < value[2] and value[1] < value[3]):
        raise _fail(where, f"box {value!r} is not [x1, y1, x2, y2] with x1 < x2, y1 < y2 (absolute pixels)")
    return [float(v) for v in value]


def _frame_id(key, where: str) -> int:
    """A ``frames`` key as a frame_id: a decimal string (as JSON holds it) or an int."""
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    raise _fail(where, f"frame key {key!r} is not a frame_id (a non-negative integer)")


def _header(sidecar) -> tuple[str, ...]:
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise _fail("header", f"not an {FORMAT!r} object (its 'format' must be {FORMAT!r})")
    if sidecar.get("version") != VERSION:
        raise _fail("header", f"version {sidecar.get('version')!r}; this reader knows version {VERSION}")
    kinds = sidecar.get("kinds")
    if not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds) or len(set(kinds)) != len(kinds):
        raise _fail("header", f"'kinds' must be a list of distinct names, got {kinds!r}")
    if not isinstance(sidecar.get("videos"), list):
        raise _fail("header", "no 'videos' list")
    return tuple(sorted(kinds))


def parse(sidecar) -> MimicBoxes:
    """Check a parsed sidecar (module docstring) and flatten its boxes.

    Raises:
        MimicSidecarError: a wrong format or version, a missing or malformed key, an unknown
            kind, a frame key that is not a non-negative integer, a box that is not 4 finite
            numbers with ``x1 < x2`` and ``y1 < y2``, or a video listed twice.
    """
    kinds = _header(sidecar)
    videos: dict[int, str] = {}
    rows: list[tuple[int, int, int, list[float]]] = []
    for v, video in enumerate(sidecar["videos"]):
        where = f"videos[{v}]"
        if not isinstance(video, dict) or not isinstance(video.get("video_id"), int) or not isinstance(video.get("mimics"), list):
            raise _fail(where, "needs an integer 'video_id', a 'name' and a 'mimics' list")
        vid = video["video_id"]
        if vid in videos:
            raise _fail(where, f"video_id {vid} is listed twice")
        videos[vid] = str(video.get("name"))
        for m, mimic in enumerate(video["mimics"]):
            where = f"videos[{v}] ({videos[vid]}) mimics[{m}]"
            if not isinstance(mimic, dict) or mimic.get("kind") not in kinds or not isinstance(mimic.get("frames"), dict):
                raise _fail(where, f"needs a 'kind' among {list(kinds)} and a 'frames' object, got {mimic!r:.200}")
            kind = kinds.index(mimic["kind"])
            for key, box in mimic["frames"].items():
                rows.append((vid, _frame_id(key, where), kind, _box(box, f"{where} frame {key}")))
    return MimicBoxes(
        kinds=kinds,
        videos=videos,
        video_id=np.array([r[0] for r in rows], dtype=np.int64),
        frame_id=np.array([r[1] for r in rows], dtype=np.int64),
        kind=np.array([r[2] for r in rows], dtype=np.int64),
        boxes=np.array([r[3] for r in rows], dtype=np.float64).reshape(-1, 4),
    )


def read(path: str | Path) -> MimicBoxes:
    """Read and :func:`parse` the sidecar file ``path``.

    Raises:
        FileNotFoundError: no such file.
        MimicSidecarError: not JSON, or malformed (see :func:`parse`; the message names the file).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MimicSidecarError(f"{path}: not valid JSON ({exc})") from None
    try:
        return parse(data)
    except MimicSidecarError as exc:
        raise MimicSidecarError(f"{path}: {exc}") from None
