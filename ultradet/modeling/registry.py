"""Small name -> class registries, so a config string selects a component without if-chains
(detectron2's habit)."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


class Registry(dict):
    """A named mapping from config names to component classes.

    >>> ROI_HEADS = Registry("RoI head")
    >>> @ROI_HEADS.register("relation")
    ... class RelationROIHeads: ...
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator registering ``cls`` under ``name``.

        Raises:
            KeyError: if ``name`` is already registered.
        """

        def decorator(cls: T) -> T:
            if name in self:
                raise KeyError(f"{self.kind} '{name}' is already registered")
            self[name] = cls
            return cls

        return decorator

    def get(self, name: str):  # type: ignore[override]
        """Look up ``name``; raises KeyError listing the registered names."""
        if name not in self:
            raise KeyError(f"unknown {self.kind} '{name}'; registered: {', '.join(sorted(self))}")
        return self[name]


META_ARCHITECTURES = Registry("meta-architecture")
PROPOSAL_GENERATORS = Registry("proposal generator")
DENSE_HEADS = Registry("dense head")
ROI_HEADS = Registry("RoI head")
FLOW_ESTIMATORS = Registry("flow estimator")
