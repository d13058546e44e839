"""ImageNet-pretrained ResNet weights for a detector: resolve ``model.backbone.weights``, convert
it to torchvision's key names and load what fits (spec section 2, ``MODEL.WEIGHTS``; spec 3.2, 3.4).

``model.backbone.weights`` takes one of three forms:

* ``torchvision:<Enum>.<member>``, e.g. ``torchvision:ResNet34_Weights.IMAGENET1K_V1``: loaded
  through torchvision's weights API (``torchvision.models.get_weight(...).get_state_dict()``),
  with torchvision's own download and cache (``$TORCH_HOME/hub/checkpoints/<file>``, see
  :func:`torchvision_cache_path`). Where the file is not cached and cannot be downloaded, a
  :class:`PretrainedWeightsError` names the exact path to put it at.
* a local torchvision-format state dict (``torch.save(resnet.state_dict())``, possibly under a
  ``"model"`` or ``"state_dict"`` key): a full ResNet, or only the C4 trunk (``conv1``, ``bn1``,
  ``layer1..layer3``) such as a pretraining stage writes.
* a detectron2-format ``.pkl`` (the original's ``pretrained_models/r34.pkl``): a pickled dict
  whose ``"model"`` entry maps detectron2 names to numpy arrays, converted by
  :func:`detectron2_to_torchvision`. Unpickling runs code from the file: use trusted files only.

The torchvision-format dict is then loaded as detectron2's checkpointer does: ``conv1``, ``bn1``,
``layer1..layer3`` into the backbone, ``layer4`` (ImageNet's res5) into every RoI head's res5
stage (:class:`~ultradet.modeling.layers.res5.RoIBoxEncoder`, built in the head as in the C4
Faster R-CNN). Tensors whose shapes differ are skipped and listed: with ``d_model=256`` (the
original's ``HALF_CHANNEL``) every res5 tensor is, so res5 keeps its MSRA init, as in the
original (spec 3.4). The :class:`LoadReport` lists matched, missing, unexpected and skipped keys
and is logged.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn
from torchvision.models import get_weight

from ultradet.modeling.layers.res5 import RoIBoxEncoder
from ultradet.modeling.weights_file import read_state_dict

logger = logging.getLogger(__name__)

TORCHVISION_PREFIX = "torchvision:"
# Seconds a download attempt may wait on the network before the run is failed with the cache path.
DOWNLOAD_TIMEOUT_S = 30.0
# torchvision ResNet stage -> detector module prefix; layer4 is mapped onto each RoI head's res5.
_TRUNK = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")


class PretrainedWeightsError(RuntimeError):
    """``model.backbone.weights`` cannot be read or fetched; the message says what to do."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did. Keys are the detector's own (``backbone.layer1.0.conv1.weight``)
    except ``unexpected``, which holds torchvision-format checkpoint keys with no place in the model.

    Attributes:
        matched: loaded keys. missing: keys of the mapped modules the checkpoint did not provide.
        unexpected: checkpoint keys that fit no module of the model (``fc.*``, a deeper ResNet's blocks).
        skipped: ``key -> (checkpoint shape, model shape)`` for shape mismatches (not loaded).
    """

    source: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def summary(self) -> str:
        """A multi-line human-readable account, every non-matched key listed."""
        lines = [
            f"pretrained weights {self.source}: {len(self.matched)} tensors loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.skipped)} skipped (shape mismatch)"
        ]
        lines += [f"  missing: {k}" for k in self.missing]
        lines += [f"  unexpected: {k}" for k in self.unexpected]
        lines += [f"  skipped {k}: checkpoint {a} vs model {b}" for k, (a, b) in self.skipped.items()]
        return "\n".join(lines)


# ------------------------------------------------------------------------------ resolving the source
def torchvision_weights(identifier: str):
    """The torchvision ``WeightsEnum`` member named by ``torchvision:<Enum>.<member>``.

    Raises:
        PretrainedWeightsError: the name is not a torchvision weights entry.
    """
    name = identifier[len(TORCHVISION_PREFIX) :]
    try:
        return get_weight(name)
    except (ValueError, KeyError, AttributeError) as exc:
        raise PretrainedWeightsError(
            f"model.backbone.weights: '{identifier}' is not a torchvision weights name "
            f"(expected e.g. 'torchvision:ResNet34_Weights.IMAGENET1K_V1'): {exc}"
        ) from None


def torchvision_cache_path(identifier: str) -> Path:
    """Where torchvision caches (and looks for) the file of ``identifier``:
    ``torch.hub.get_dir()/checkpoints/<basename of the weights URL>`` (``$TORCH_HOME/hub/...``)."""
    url = torchvision_weights(identifier).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _fetch_torchvision(identifier: str) -> dict[str, torch.Tensor]:
    weights = torchvision_weights(identifier)
    cached = torchvision_cache_path(identifier)
    if cached.is_file():
        return weights.get_state_dict(progress=False)
    # Not cached: torchvision downloads it. urllib has no timeout of its own, so a blocked
    # network would hang the run; bound every socket operation of the download.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return weights.get_state_dict(progress=False)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise PretrainedWeightsError(
            f"model.backbone.weights: cannot fetch '{identifier}' ({type(exc).__name__}: {exc}). "
            f"Download {weights.url} on a machine with internet access and put it at {cached} "
            f"(torchvision's cache, set by $TORCH_HOME), or give a local file path instead."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _read_detectron2_pkl(path: Path) -> dict[str, torch.Tensor]:
    with path.open("rb") as f:
        data = pickle.load(f, encoding="latin1")
    model = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(model, dict):
        raise PretrainedWeightsError(f"{path}: expected a pickled dict with a 'model' dict, got {type(data).__name__}")
    return detectron2_to_torchvision({k: torch.from_numpy(np.asarray(v)) for k, v in model.items()})


def read_pretrained(spec: str) -> dict[str, torch.Tensor]:
    """A torchvision-format ResNet state dict from any of the three forms of the module docstring.

    Raises:
        PretrainedWeightsError: unknown torchvision name, not fetchable (the message names the
            cache path), or a ``.pkl`` that is no detectron2 model.
        CheckpointError: a ``.pth`` that does not load or holds no state dict
            (:func:`~ultradet.modeling.weights_file.read_state_dict`).
        FileNotFoundError: a local path that does not exist.
    """
    if spec.startswith(TORCHVISION_PREFIX):
        return _fetch_torchvision(spec)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"model.backbone.weights: {path} not found (a local .pth/.pkl file, or "
            f"'torchvision:<Enum>.<member>' for torchvision's download and cache)"
        )
    return _read_detectron2_pkl(path) if path.suffix == ".pkl" else read_state_dict(path, key="model.backbone.weights")


# ------------------------------------------------------------------------------- detectron2 -> tv
_D2_BLOCK_KEY = re.compile(r"^res(?P<stage>\d)\.(?P<block>\d+)\.(?P<layer>conv\d|shortcut)\.(?P<norm>norm\.)?(?P<param>.+)$")


def detectron2_key_to_torchvision(key: str) -> str:
    """Map one detectron2 ResNet key to torchvision's name; unknown keys are returned unchanged
    (they are then reported as unexpected).

    ``stem.conv1.weight`` -> ``conv1.weight``; ``stem.conv1.norm.X`` -> ``bn1.X``;
    ``res<k>.<i>.conv<j>.weight`` -> ``layer<k-1>.<i>.conv<j>.weight``;
    ``res<k>.<i>.conv<j>.norm.X`` -> ``layer<k-1>.<i>.bn<j>.X``;
    ``res<k>.<i>.shortcut.weight`` -> ``layer<k-1>.<i>.downsample.0.weight``;
    ``res<k>.<i>.shortcut.norm.X`` -> ``layer<k-1>.<i>.downsample.1.X``; ``fc1000.X`` -> ``fc.X``.
    """
    for d2, tv in (("stem.conv1.norm.", "bn1."), ("stem.conv1.", "conv1."), ("fc1000.", "fc.")):
        if key.startswith(d2):
            return tv + key[len(d2) :]
    m = _D2_BLOCK_KEY.match(key)
    if m is None:
        return key
    block = f"layer{int(m['stage']) - 1}.{m['block']}."
    if m["layer"] == "shortcut":
        return block + ("downsample.1." if m["norm"] else "downsample.0.") + m["param"]
    j = m["layer"][-1]
    return block + (f"bn{j}." if m["norm"] else f"conv{j}.") + m["param"]


def detectron2_to_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a detectron2 ResNet state dict to torchvision's names (see
    :func:`detectron2_key_to_torchvision`)."""
    return {detectron2_key_to_torchvision(k): v for k, v in state.items()}


# ------------------------------------------------------------------------------------- loading
def _model_key(key: str, res5_prefixes: list[str]) -> list[str]:
    """The detector keys a torchvision-format ResNet key loads into (none: unexpected)."""
    if key.startswith(_TRUNK):
        return [f"backbone.{key}"]
    if key.startswith("layer4."):
        return [f"{prefix}res5.{key[len('layer4.'):]}" for prefix in res5_prefixes]
    return []


def load_pretrained(model: nn.Module, spec: str) -> LoadReport:
    """Load ``spec`` (``model.backbone.weights``) into ``model`` (a detector whose ResNet trunk is
    ``model.backbone``) and log the :class:`LoadReport`.

    Raises:
        PretrainedWeightsError / FileNotFoundError: see :func:`read_pretrained`; also when not a
            single tensor fits (a file that is not a ResNet of this depth's layout).
    """
    state = {k: v for k, v in read_pretrained(spec).items() if not k.endswith("num_batches_tracked")}
    res5 = [f"{name}." for name, m in model.named_modules() if isinstance(m, RoIBoxEncoder)]
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    report = LoadReport(source=spec)
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        targets = [t for t in _model_key(key, res5) if t in own]
        if not targets:
            report.unexpected.append(key)
        for target in targets:
            if value.shape == own[target].shape:
                to_load[target] = value
            else:
                report.skipped[target] = (tuple(value.shape), tuple(own[target].shape))
    mapped = ["backbone."] + [f"{p}res5." for p in res5]
    report.missing = [k for k in own if k.startswith(tuple(mapped)) and k not in to_load and k not in report.skipped]
    report.matched = sorted(to_load)
    if not to_load:
        raise PretrainedWeightsError(f"model.backbone.weights: no tensor of {spec} fits the model\n" + report.summary())
    # strict=False: only the mapped subset is given; BN step counters need not be carried.
    model.load_state_dict(to_load, strict=False)
    logger.log(logging.WARNING if report.missing or report.skipped else logging.INFO, report.summary())
    return report
