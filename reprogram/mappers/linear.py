"""Learned linear maps: on source logits (a fully connected label mapping) or on pooled features (a head)."""

from __future__ import annotations

import torch
from torch import nn

from reprogram.mappers.base import LabelMapper


class LinearMapping(LabelMapper):
    """Learned linear map of the S source logits to K classes: ``S*K + K`` parameters.

    Args:
        num_sources: S.
        num_targets: K.
        bias: learn a per-class bias.
    """

    def __init__(self, num_sources: int, num_targets: int, bias: bool = True) -> None:
        super().__init__(num_sources, num_targets)
        self.linear = nn.Linear(num_sources, num_targets, bias=bias)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        """Args: source: ``(B, S)``. Returns: ``(B, K)``."""
        return self.linear(source)


class FeatureHead(LinearMapping):
    """Linear head on the backbone's pooled features ``(B, D)``, for backbones without source labels."""

    input_kind = "features"
