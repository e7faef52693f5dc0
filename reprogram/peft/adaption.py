"""Attention prompting (LLaMA-Adapter, Zhang/Gao et al. 2023) for speech encoders.

In each of the top ``num_layers`` layers, P learnable adaption prompts are projected by the layer's own
(frozen) key and value projections; every frame's query attends to them with a separate softmax, and the
result enters the attention output through a per-head gate initialised at zero::

    out = Attn(x) + W_o [ g_h * softmax(q_h K_p,h^T / sqrt(d_h)) V_p,h ]_h

With ``g = 0`` the encoder is exactly the frozen model (bit-identical hidden states), so training starts
from the pretrained behaviour. Budget: ``L * (P * D + H)`` trainable parameters. The output projection is
applied without its bias (it is already in ``Attn(x)``); if the output projection carries LoRA, the adaption
branch uses its base weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from backbones.base import Backbone
from reprogram.peft.base import (
    PeftConfig,
    PeftMethod,
    encoder_layers,
    hidden_size,
    layer_attention,
    num_heads,
    projection_names,
)


@dataclass
class AdaptionConfig(PeftConfig):
    """Attention prompting budget.

    Args:
        length: P, adaption prompts per layer.
        num_layers: how many of the top layers are prompted (``None``: all).
        init_std: standard deviation of the prompts' normal initialisation (the gates start at 0).
    """

    method = "adaption"
    length: int = 10
    num_layers: int | None = None
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"AdaptionConfig.length={self.length}: use at least one adaption prompt")
        if self.num_layers is not None and self.num_layers < 1:
            raise ValueError(f"AdaptionConfig.num_layers={self.num_layers}: prompt at least one layer (or None: all)")


class AttentionPrompting(PeftMethod):
    """Gated adaption prompts in the top layers (see module docstring).

    Attributes:
        prompts: ``(L, P, D)`` adaption prompts.
        gates: ``(L, H)`` zero-initialised per-head gates.
    """

    config_class = AdaptionConfig

    def _attach(self, backbone: Backbone) -> None:
        layers = encoder_layers(backbone)
        count = len(layers) if self.config.num_layers is None else self.config.num_layers
        if count > len(layers):
            raise ValueError(f"AdaptionConfig.num_layers={count} but the encoder has {len(layers)} layers")
        attentions = [layer_attention(layer, backbone) for layer in layers[len(layers) - count:]]
        heads = num_heads(attentions[0], backbone)
        d = hidden_size(backbone)
        self.prompts = nn.Parameter(torch.randn(count, self.config.length, d) * self.config.init_std)
        self.gates = nn.Parameter(torch.zeros(count, heads))
        names = projection_names(backbone)
        self._handles = [
            attention.register_forward_hook(self._hook(i, names, heads), with_kwargs=True)
            for i, attention in enumerate(attentions)
        ]

    def detach_from(self, backbone: Backbone) -> None:
        """Remove the hooks (the backbone behaves as before attaching)."""
        for handle in self._handles:
            handle.remove()
        delattr(backbone, f"peft_{self.config.method}")

    def _hook(self, index: int, names: dict[str, str], heads: int):
        q_name, k_name, v_name, o_name = names["q"], names["k"], names["v"], names["o"]

        def add_adaption(module: nn.Module, args: tuple, kwargs: dict, output):
            x = args[0] if args else kwargs["hidden_states"]  # (B, T, D)
            b, t, d = x.shape
            q = getattr(module, q_name)(x).view(b, t, heads, -1).transpose(1, 2)  # (B, H, T, d_h)
            prompt = self.prompts[index].to(x.dtype)  # (P, D)
            k = getattr(module, k_name)(prompt).view(-1, heads, q.shape[-1]).transpose(0, 1)  # (H, P, d_h)
            v = getattr(module, v_name)(prompt).view(-1, heads, q.shape[-1]).transpose(0, 1)  # (H, P, d_h)
            weights = torch.matmul(q, k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(dim=-1)  # (B, H, T, P)
            mixed = torch.matmul(weights * self.gates[index].view(1, heads, 1, 1), v)  # (B, H, T, d_h)
            delta = F.linear(mixed.transpose(1, 2).reshape(b, t, d), getattr(module, o_name).weight)  # (B, T, D)
            if isinstance(output, tuple):
                return (output[0] + delta, *output[1:])
            return output + delta

        return add_adaption


def build(backbone: Backbone, **options) -> AttentionPrompting:
    """Attach attention prompting with :class:`AdaptionConfig` ``options``."""
    return AttentionPrompting(backbone, AdaptionConfig.from_dict(options))
