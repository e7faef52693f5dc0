"""The label-mapper / head interface: ``(B, S)`` source logits or features -> ``(B, K)`` target logits."""

from __future__ import annotations

import torch
from torch import nn


class LabelMapper(nn.Module):
    """Maps source-model outputs to target-class logits.

    Some mappers are fitted from data rather than (or as well as) trained by gradient:
    they set ``needs_fit = True`` and implement :meth:`fit`; ILM-style mappers also set
    ``refit_every_epoch = True``.

    Args:
        num_sources: S, the number of source labels (or feature width).
        num_targets: K, the number of target classes.
    """

    needs_fit: bool = False
    refit_every_epoch: bool = False

    def __init__(self, num_sources: int, num_targets: int) -> None:
        super().__init__()
        if num_targets < 2:
            raise ValueError(f"a label mapper needs at least 2 target classes, got {num_targets}")
        self.num_sources = num_sources
        self.num_targets = num_targets

    def fit(self, source: torch.Tensor, targets: torch.Tensor) -> None:
        """Fit the mapping from ``(M, S)`` source outputs and ``(M,)`` integer targets."""
        raise NotImplementedError(f"{type(self).__name__} is not fitted from data")

    def forward(self, source: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
