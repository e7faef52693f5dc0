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
    #: which backbone output the mapper reads: ``"logits"`` (source labels) or ``"features"`` (pooled features).
    input_kind: str = "logits"

    def __init__(self, num_sources: int, num_targets: int) -> None:
        super().__init__()
        if num_sources < 1:
            raise ValueError(f"a label mapper needs at least 1 source label or feature, got {num_sources}")
        if num_targets < 2:
            raise ValueError(f"a label mapper needs at least 2 target classes, got {num_targets}")
        self.num_sources = num_sources
        self.num_targets = num_targets

    @classmethod
    def from_backbone(cls, backbone: nn.Module, num_targets: int, **options) -> LabelMapper:
        """Build the mapper for ``backbone`` (S read from its spec: label count or feature width).

        Args:
            backbone: a :class:`backbones.base.Backbone` (anything with a ``spec`` and a ``name``).
            num_targets: K.
            **options: the mapper's own options.
        """
        spec = backbone.spec
        name = getattr(backbone, "name", type(backbone).__name__)
        if cls.input_kind == "logits":
            if spec.num_labels == 0:
                raise ValueError(
                    f"backbone {name!r} has no source labels, so {cls.__name__} has nothing to map; "
                    "use the 'feature_linear' head (or 'semantic' for CLIP backbones)"
                )
            return cls(spec.num_labels, num_targets, **options)
        if not spec.feature_dim:
            raise ValueError(f"backbone {name!r} declares no feature_dim in its spec; {cls.__name__} needs it")
        return cls(spec.feature_dim, num_targets, **options)

    def fit(self, source: torch.Tensor, targets: torch.Tensor) -> None:
        """Fit the mapping from ``(M, S)`` source outputs and ``(M,)`` integer targets."""
        raise NotImplementedError(f"{type(self).__name__} is not fitted from data")

    def forward(self, source: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
