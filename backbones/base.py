"""The one interface every frozen source model implements."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reprogram.spec import InputSpec

#: Attribute set on modules that a method adds inside a backbone (LoRA layers, prompts, adapters).
#: ``Backbone.train()`` lets exactly these modules (and their children) follow the train/eval mode.
TRAINABLE_TAG = "_reprogram_trainable"


@dataclass
class BackboneOutput:
    """What a backbone returns for a batch of B examples.

    Attributes:
        logits: ``(B, S)`` source-label logits for classifiers, else ``None``.
        features: ``(B, D)`` pooled features (``D == spec.feature_dim``).
        hidden_states: speech encoders: every layer's output, each ``(B, T, D)``, the input
            embedding first (``len == spec.num_layers``); ``None`` for other modalities.
        mask: ``(B, T)`` bool, True at valid frames of ``hidden_states`` (clips of unequal length),
            or ``None`` when every frame is valid.
    """

    logits: torch.Tensor | None
    features: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    mask: torch.Tensor | None = None


class Backbone(nn.Module):
    """A frozen pretrained model.

    Subclasses build their network, set ``self.spec`` and ``self.name``, call ``self.freeze()`` at
    the end of ``__init__`` and implement ``forward(x) -> BackboneOutput`` with ``x`` of shape
    ``(B, *spec.shape)`` (speech/audio: ``(B, N)`` waveforms, any N when ``spec.shape == (-1,)``).

    Frozen means: no parameter requires grad, and the network stays in eval mode whatever the
    wrapping model's ``.train()`` says, so batch-norm statistics and dropout never change. Gradients
    still flow to the input. Methods that insert trainable modules (LoRA, prompts) tag them with
    :data:`TRAINABLE_TAG`; those modules follow ``.train()``. Full fine-tuning calls ``unfreeze()``.
    """

    spec: InputSpec
    name: str

    def __init__(self) -> None:
        super().__init__()
        self._unfrozen = False

    def freeze(self) -> Backbone:
        """Make every parameter non-trainable and lock the network in eval mode."""
        for p in self.parameters():
            p.requires_grad_(False)
        self._unfrozen = False
        return self.train(False)

    def unfreeze(self) -> Backbone:
        """Full fine-tuning: every parameter trains and ``.train()`` behaves as in plain PyTorch."""
        for p in self.parameters():
            p.requires_grad_(True)
        self._unfrozen = True
        return self

    def train(self, mode: bool = True) -> Backbone:
        """Set the wrapper's flag; frozen submodules stay in eval, tagged trainable ones follow ``mode``."""
        if self._unfrozen:
            return super().train(mode)
        self.training = mode

        def visit(module: nn.Module, trainable: bool) -> None:
            trainable = trainable or bool(getattr(module, TRAINABLE_TAG, False))
            module.training = mode and trainable
            for child in module.children():
                visit(child, trainable)

        for child in self.children():
            visit(child, False)
        return self

    def forward(self, x: torch.Tensor) -> BackboneOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count (all, or only those that require grad)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def extra_repr(self) -> str:
        return f"name={getattr(self, 'name', '?')!r}, spec={getattr(self, 'spec', None)}"


class OfflineWeightsError(RuntimeError):
    """Pretrained weights could not be fetched; the message says how to get them or what to use instead."""


OFFLINE_ALTERNATIVES = (
    "offline:efficientnet_lite0 (image), offline:efficientnet_lite0_video (video stand-in), "
    "offline:whisper_tiny_en (speech), offline:crepe (pitch embeddings)"
)


def offline_error(model_id: str, cache_var: str, cause: BaseException | None = None) -> OfflineWeightsError:
    """One clear error for weights that cannot be downloaded.

    Args:
        model_id: the hub id or weight name that failed.
        cache_var: the environment variable naming the cache where the weights would be found
            (``HF_HOME``, ``TORCH_HOME``, ...).
        cause: the library's own exception, summarised on the last line.
    """
    reason = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}" if cause else ""
    return OfflineWeightsError(
        f"could not load pretrained weights for {model_id!r}. Either run once with internet access so they "
        f"are cached (set {cache_var} to choose the cache folder; set HF_HUB_OFFLINE=1 afterwards to use the "
        f"cache only), or copy the weights into that cache, or use a backbone that needs no network: "
        f"{OFFLINE_ALTERNATIVES}." + (f"\n  cause: {reason}" if reason else "")
    )
