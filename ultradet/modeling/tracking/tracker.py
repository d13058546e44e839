"""Placeholder: the CacheTracker is being written (issue 18)."""

from __future__ import annotations


class CacheTracker:
    @classmethod
    def from_config(cls, cfg) -> "CacheTracker":
        raise NotImplementedError("CacheTracker is not written yet")
