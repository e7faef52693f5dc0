"""Classification heads on a speech encoder's hidden states: ``BackboneOutput -> (B, K)`` logits.

The same heads serve PEFT methods (LoRA, prompts, probes) and the speech reprogramming programs, so they
depend only on :class:`~backbones.base.BackboneOutput` (``hidden_states`` + ``mask``), never on PEFT.

* :class:`LinearHead`: linear layer on the masked mean of one hidden state (the last by default).
* :class:`WeightedSumHead`: SUPERB's learned softmax-weighted sum of all hidden states (Yang et al. 2021),
  then masked mean and a linear layer. Because the weighted sum and the mean commute, it also runs on
  per-layer mean-pooled features cached once (:meth:`WeightedSumHead.forward_pooled`), which is exact.
* :class:`AttentivePoolingHead`: self-attentive pooling (Okabe et al. 2018 / SUPERB's speaker tasks):
  a small MLP scores each valid frame, softmax over frames, weighted mean, linear layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from backbones.base import BackboneOutput
from backbones.hf_speech import masked_mean  # (B, T, D), (B, T) -> (B, D)

HiddenStates = BackboneOutput | Sequence[torch.Tensor]


def _unpack(states: HiddenStates, mask: torch.Tensor | None) -> tuple[Sequence[torch.Tensor], torch.Tensor | None]:
    if isinstance(states, BackboneOutput):
        if states.hidden_states is None:
            raise ValueError("this head needs hidden states; the backbone returned none (use a speech backbone)")
        return states.hidden_states, states.mask if mask is None else mask
    return states, mask


class _Head(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classification head needs at least 2 classes, got {num_classes}")
        self.num_classes = num_classes

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class LinearHead(_Head):
    """Linear classifier on the masked mean of hidden state ``layer``.

    Args:
        hidden_size: D.
        num_classes: K.
        layer: which hidden state (index into ``hidden_states``; -1 = last).
    """

    def __init__(self, hidden_size: int, num_classes: int, layer: int = -1) -> None:
        super().__init__(num_classes)
        self.layer = layer
        self.linear = nn.Linear(hidden_size, num_classes)

    def forward(self, states: HiddenStates, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden_states`` (each ``(B, T, D)``) and ``mask`` ``(B, T)`` -> ``(B, K)``."""
        hidden, mask = _unpack(states, mask)
        return self.linear(masked_mean(hidden[self.layer], mask))


class WeightedSumHead(_Head):
    """SUPERB weighted sum of all L hidden states (softmax weights, zero-initialised = uniform), mean, linear.

    Args:
        num_layers: L, the number of hidden states (``spec.num_layers``).
        hidden_size: D.
        num_classes: K.
    """

    def __init__(self, num_layers: int, hidden_size: int, num_classes: int) -> None:
        super().__init__(num_classes)
        if num_layers < 1:
            raise ValueError(f"WeightedSumHead needs at least one hidden state, got num_layers={num_layers}")
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.linear = nn.Linear(hidden_size, num_classes)

    @property
    def layer_weights(self) -> torch.Tensor:
        """``(L,)`` softmax weights: which layers the head relies on."""
        return self.layer_logits.softmax(dim=0)

    def forward(self, states: HiddenStates, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden_states`` (L tensors ``(B, T, D)``) and ``mask`` ``(B, T)`` -> ``(B, K)``."""
        hidden, mask = _unpack(states, mask)
        if len(hidden) != self.layer_logits.numel():
            raise ValueError(f"WeightedSumHead was built for {self.layer_logits.numel()} hidden states, got "
                             f"{len(hidden)}; build it with num_layers=backbone.spec.num_layers")
        mixed = torch.einsum("l,lbtd->btd", self.layer_weights, torch.stack(tuple(hidden)))  # (B, T, D)
        return self.linear(masked_mean(mixed, mask))

    def forward_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Same head on per-layer pooled features ``(B, L, D)`` (exact: the mean and the sum commute)."""
        return self.linear(torch.einsum("l,bld->bd", self.layer_weights, pooled))


class AttentivePoolingHead(_Head):
    """Self-attentive pooling over the valid frames of hidden state ``layer``, then a linear layer.

    Args:
        hidden_size: D.
        num_classes: K.
        attention_size: width of the scoring MLP.
        layer: which hidden state (-1 = last).
    """

    def __init__(self, hidden_size: int, num_classes: int, attention_size: int = 128, layer: int = -1) -> None:
        super().__init__(num_classes)
        self.layer = layer
        self.score = nn.Sequential(nn.Linear(hidden_size, attention_size), nn.Tanh(), nn.Linear(attention_size, 1))
        self.linear = nn.Linear(hidden_size, num_classes)

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, D)`` -> pooled ``(B, D)`` and frame weights ``(B, T)`` (zero at padded frames)."""
        scores = self.score(hidden).squeeze(-1)  # (B, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=1)  # (B, T)
        return torch.einsum("bt,btd->bd", weights, hidden), weights

    def forward(self, states: HiddenStates, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``hidden_states`` (each ``(B, T, D)``) and ``mask`` ``(B, T)`` -> ``(B, K)``."""
        hidden, mask = _unpack(states, mask)
        return self.linear(self.pool(hidden[self.layer], mask)[0])


HEADS: dict[str, type[_Head]] = {
    "linear": LinearHead,
    "weighted_sum": WeightedSumHead,
    "attentive": AttentivePoolingHead,
}


def build_head(kind: str, num_layers: int, hidden_size: int, num_classes: int, **options) -> nn.Module:
    """Build head ``kind`` (``linear``, ``weighted_sum``, ``attentive``) for a backbone's sizes.

    Args:
        kind: head name.
        num_layers: number of hidden states (``spec.num_layers``); used by ``weighted_sum``.
        hidden_size: D.
        num_classes: K.
        options: extra keyword options of the head class.
    """
    if kind not in HEADS:
        raise KeyError(f"unknown head {kind!r}; choose one of {sorted(HEADS)}")
    if kind == "weighted_sum":
        return WeightedSumHead(num_layers, hidden_size, num_classes, **options)
    return HEADS[kind](hidden_size, num_classes, **options)


class SpeechClassifier(nn.Module):
    """A speech backbone (frozen, possibly carrying a PEFT method or fed by a program) plus a head.

    ``forward(wave (B, N), lengths=None) -> (B, K)``, the contract of :func:`reprogram.experiment.train.train`.
    Trainable parameters are those of the head plus whatever requires grad inside the backbone.

    Args:
        backbone: a speech backbone returning ``hidden_states`` and ``mask``.
        head: a head from this module.
        program: optional input transform ``(B, N) -> (B, N')`` applied before the backbone.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, program: nn.Module | None = None) -> None:
        super().__init__()
        self.program = program
        self.backbone = backbone
        self.head = head

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = self.program(wave) if self.program is not None else wave
        return self.head(self.backbone(x, lengths))
