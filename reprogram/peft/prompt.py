"""Prompt tuning for speech encoders: learned vectors prepended to the transformer's input sequence.

peft's prompt tuning needs word embeddings; a speech encoder has frames, so the prompts are inserted here,
after the convolutional front end *and after the positional encoding*:

* HuBERT / wav2vec2: the convolutional relative position embedding is computed on the frames alone, so the
  frames' positions are exactly those of the unprompted model and no prompt leaks into a frame's position;
* WavLM: the gated relative position bias covers the frames as before; prompt rows and columns get bias 0
  (:func:`reprogram.peft.arch.relative_bias`);
* Whisper: the frames keep their sinusoidal/learned absolute positions; the prompts carry none (a learned
  prompt vector is its own learned absolute embedding).

Shallow (Lester et al. 2021 style): P prompt vectors enter the first layer and travel through all layers.
Deep (VPT-deep / prefix style, Jia et al. 2022): every layer receives its own P fresh prompt vectors and the
previous layer's prompt outputs are dropped. The prompt length P is the budget: ``P * D`` (shallow) or
``L * P * D`` (deep) trainable parameters.

Each layer's ``forward`` is wrapped on the instance: the wrapper prepends the prompts, extends the attention
mask, runs the layer and strips the prompt positions from its output, so every hidden state the backbone
returns has exactly the frames of the unprompted model and its mask stays valid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from backbones.base import Backbone
from reprogram.peft.arch import has_relative_bias, relative_bias
from reprogram.peft.base import PeftConfig, PeftMethod, encoder_layers, extend_mask, hidden_size, layer_attention


@dataclass
class PromptConfig(PeftConfig):
    """Prompt tuning of a speech encoder.

    Args:
        length: P, the number of prompt vectors (the budget).
        deep: per-layer prompts (True) or input-only prompts (False).
        init_std: standard deviation of the normal initialisation.
    """

    method = "prompt"
    length: int = 8
    deep: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"PromptConfig.length={self.length}: use at least one prompt vector")
        if self.init_std <= 0:
            raise ValueError(f"PromptConfig.init_std={self.init_std}: use a positive standard deviation")


@dataclass
class DeepPromptConfig(PromptConfig):
    """Per-layer prompts (registered as ``deep_prompt`` so result tables name it)."""

    method = "deep_prompt"
    deep: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.deep:
            raise ValueError("DeepPromptConfig.deep=False: use the 'prompt' method for input-only prompts")


class PromptTuning(PeftMethod):
    """Learned prompts prepended to every layer's input (see module docstring).

    Attributes:
        prompts: ``(P, D)`` (shallow) or ``(L, P, D)`` (deep).
    """

    config_class = PromptConfig

    def _attach(self, backbone: Backbone) -> None:
        layers = encoder_layers(backbone)
        d, p = hidden_size(backbone), self.config.length
        shape = (len(layers), p, d) if self.config.deep else (p, d)
        self.prompts = nn.Parameter(torch.randn(shape) * self.config.init_std)
        first_attention = layer_attention(layers[0], backbone) if has_relative_bias(backbone.model) else None
        self._carry: torch.Tensor | None = None  # the previous layer's prompt outputs, within one forward
        self._wrapped = list(layers)
        for index, layer in enumerate(layers):
            layer.forward = self._wrap(index, layer.forward, first_attention)

    @torch.no_grad()
    def init_from_frames(self, hidden_states: tuple[torch.Tensor, ...], mask: torch.Tensor | None = None,
                         seed: int = 0) -> None:
        """Initialise the prompts from real frames, as text prompt tuning initialises from word embeddings.

        A random prompt vector is far from anything the frozen layers have seen and perturbs the frames'
        representations; frames sampled from the unprompted model's own layer inputs are in-distribution.

        Args:
            hidden_states: the UNPROMPTED backbone's hidden states on a few training clips (``L + 1``
                tensors ``(B, T, D)``; the input of layer ``l`` is ``hidden_states[l]``).
            mask: ``(B, T)`` valid frames, or None.
            seed: seed of the frame sampling.
        """
        generator = torch.Generator().manual_seed(seed)
        for layer in range(self.prompts.shape[0] if self.config.deep else 1):
            frames = hidden_states[layer].reshape(-1, hidden_states[layer].shape[-1])  # (B*T, D)
            if mask is not None:
                frames = frames[mask.reshape(-1)]
            pick = torch.randint(len(frames), (self.config.length,), generator=generator)
            target = self.prompts[layer] if self.config.deep else self.prompts
            target.copy_(frames[pick].to(target.dtype))

    def detach_from(self, backbone: Backbone) -> None:
        """Remove the wrappers (the backbone behaves as before attaching)."""
        for layer in self._wrapped:
            del layer.forward
        delattr(backbone, f"peft_{self.config.method}")

    def _prompt_for(self, index: int, batch: int) -> torch.Tensor:
        """``(B, P, D)`` prompt states entering layer ``index``."""
        if self.config.deep:
            return self.prompts[index].unsqueeze(0).expand(batch, -1, -1)
        if index == 0:
            return self.prompts.unsqueeze(0).expand(batch, -1, -1)
        assert self._carry is not None and self._carry.shape[0] == batch, "layers ran out of order"
        return self._carry

    def _wrap(self, index: int, forward: Callable, first_attention: nn.Module | None) -> Callable:
        p, last = self.config.length, len(self._wrapped) - 1

        def prompted_forward(hidden_states: torch.Tensor, *args, **kwargs):
            b, t, _ = hidden_states.shape  # (B, T, D)
            prompt = self._prompt_for(index, b).to(hidden_states.dtype)
            x = torch.cat([prompt, hidden_states], dim=1)  # (B, P+T, D)
            if args:
                args = (extend_mask(args[0], p), *args[1:])
            elif kwargs.get("attention_mask") is not None:
                kwargs["attention_mask"] = extend_mask(kwargs["attention_mask"], p)
            if first_attention is not None:
                bias = kwargs.get("position_bias")
                if bias is None or bias.shape[-1] != p + t:
                    kwargs["position_bias"] = relative_bias(first_attention, b, t, p)  # (B*H, P+T, P+T)
            out = forward(x, *args, **kwargs)
            h = out[0] if isinstance(out, tuple) else out  # (B, P+T, D)
            self._carry = h[:, :p] if index < last else None  # (B, P, D) into the next layer
            return (h[:, p:], *out[1:]) if isinstance(out, tuple) else h[:, p:]

        return prompted_forward


def build(backbone: Backbone, **options) -> PromptTuning:
    """Attach shallow prompt tuning (``deep=True`` for per-layer prompts)."""
    return PromptTuning(backbone, PromptConfig.from_dict(options))


def build_deep(backbone: Backbone, **options) -> PromptTuning:
    """Attach deep (per-layer) prompt tuning."""
    return PromptTuning(backbone, DeepPromptConfig.from_dict(options))
