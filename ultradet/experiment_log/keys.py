"""Names and values MLflow accepts: sanitised keys, bounded param and tag values, batching."""

from __future__ import annotations

import json
import posixpath
import re
import time
from typing import Any, Iterator, Mapping

from mlflow.entities import Metric
from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

_BAD_KEY_CHARS = re.compile(r"[^\w.\- /]")


def sanitize_key(name: str) -> str:
    """A metric/param name MLflow accepts on every OS: characters other than letters, digits,
    ``_ - . /`` and space become ``_`` (``"P@R0.8"`` -> ``"P_R0.8"``), empty/``.``/``..`` path
    segments are dropped, and the result is cut to MLflow's 250-character limit."""
    parts = [p for p in _BAD_KEY_CHARS.sub("_", name).split("/") if p not in ("", ".", "..")]
    return posixpath.join(*parts)[:MAX_ENTITY_KEY_LENGTH] if parts else "_"


def param_value(value: Any) -> str:
    """A param value as MLflow stores it: lists, dicts and None as JSON, cut to its limit."""
    text = json.dumps(value) if isinstance(value, (list, tuple, dict)) or value is None else str(value)
    if len(text) > MAX_PARAM_VAL_LENGTH:  # MLflow rejects longer values; keep a visible marker
        text = text[: MAX_PARAM_VAL_LENGTH - 3] + "..."
    return text


def as_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tag values as strings cut to MLflow's limit; ``None`` values are left out."""
    return {k: str(v)[:MAX_TAG_VAL_LENGTH] for k, v in tags.items() if v is not None}


def is_number(value: Any) -> bool:
    """A loggable metric value: int or float, not bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def chunks(items: list, size: int) -> Iterator[list]:
    """Consecutive slices of ``items`` of at most ``size`` (MLflow's per-request limits)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def metric(name: str, value: float, step: int) -> Metric:
    """An MLflow metric entity: sanitised ``name``, ``value`` as float, now as timestamp, ``step``."""
    return Metric(sanitize_key(name), float(value), int(time.time() * 1000), int(step))
