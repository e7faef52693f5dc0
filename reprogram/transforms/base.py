"""The input-transform ("program") interface: ``(B, N)`` waveform -> ``(B, *spec.shape)``."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from reprogram.spec import InputSpec


class InputTransform(nn.Module):
    """Maps a batch of waveforms into a frozen backbone's input space, normalised for it.

    Subclasses document, in ``budget_doc``, what their ``budget`` knob means (pad width, rank,
    epsilon, prompt length ...), and read every size from ``spec`` (never a hard-coded 224 or 16 kHz).

    Args:
        spec: the backbone's :class:`~reprogram.spec.InputSpec`.
    """

    budget_doc: ClassVar[str] = "no budget knob"

    def __init__(self, spec: InputSpec) -> None:
        super().__init__()
        self.spec = spec

    def forward(self, wave: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Args: wave: ``(B, N)`` float waveforms at ``spec.sample_rate`` (or the data's rate).

        Returns: ``(B, *spec.shape)``.
        """
        raise NotImplementedError

    def trainable_parameters(self) -> int:
        """Exact number of trainable scalars, measured from the module."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def perturbation_norms(self) -> dict[str, float]:
        """Size of the learned perturbation (``{"l2": ..., "linf": ...}``) where the program has one."""
        return {}
