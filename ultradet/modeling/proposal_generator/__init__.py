"""Proposal generators. Importing this package registers ``rpn`` and ``poto`` in
``PROPOSAL_GENERATORS``."""

from torch import nn

from ultradet.config import ExperimentConfig
from ultradet.modeling.proposal_generator.poto import POTO
from ultradet.modeling.proposal_generator.rpn import RPN
from ultradet.modeling.registry import PROPOSAL_GENERATORS

__all__ = ["POTO", "RPN", "build_proposal_generator"]


def build_proposal_generator(cfg: ExperimentConfig, *, in_channels: int, stride: int) -> nn.Module:
    """The generator named by ``cfg.model.proposal_generator.name`` over a feature map of
    ``in_channels`` channels and ``stride`` pixels."""
    cls = PROPOSAL_GENERATORS.get(cfg.model.proposal_generator.name)
    return cls.from_config(cfg, in_channels=in_channels, stride=stride)
