"""LoRA, DoRA and (IA)^3 on a speech encoder's attention projections, through Hugging Face ``peft``.

``peft.inject_adapter_in_model`` wraps exactly the projection modules named by the backbone (roles ``q``,
``k``, ``v``, ``o`` from ``backbone.attention_projections()``, or explicit module suffixes) in the chosen
encoder layers. Closed-form trainable counts on L layers of width D (square projections):
LoRA on q and v: ``L * 2 * 2 * r * D``; DoRA adds a magnitude vector, ``L * 2 * (2 * r * D + D)``;
(IA)^3 on k and v: ``L * 2 * D``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import peft
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from backbones.base import Backbone
from reprogram.peft.base import (
    ROLES,
    PeftConfig,
    PeftMethod,
    encoder_layers,
    projection_names,
    tag_trainable,
)


@dataclass
class LoraConfig(PeftConfig):
    """Low-rank adapters ``W + (alpha / r) * B A`` on attention projections.

    Args:
        r: rank (>= 1).
        alpha: scaling numerator (``lora_alpha``); the update is scaled by ``alpha / r``.
        dropout: dropout on the adapter's input.
        targets: roles (``q``, ``k``, ``v``, ``o``) or module-name suffixes to adapt.
        layers: indices of the encoder layers to adapt (``None``: all).
        use_dora: weight-decomposed LoRA (DoRA, Liu et al. 2024; peft's ``use_dora``).
    """

    method = "lora"
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q", "v")
    layers: tuple[int, ...] | None = None
    use_dora: bool = False

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoraConfig.r={self.r}: the rank must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraConfig.dropout={self.dropout}: use a probability in [0, 1)")
        if not self.targets:
            raise ValueError("LoraConfig.targets is empty: name roles (q, k, v, o) or module suffixes")

    def peft_config(self, target_regex: str) -> peft.LoraConfig:
        return peft.LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                               target_modules=target_regex, use_dora=self.use_dora, bias="none")


@dataclass
class IA3Config(PeftConfig):
    """(IA)^3: learned per-channel rescaling of projection outputs (Liu et al. 2022), initialised at 1.

    Args:
        targets: roles or module-name suffixes to rescale (default k and v, as in the paper).
        layers: indices of the encoder layers to adapt (``None``: all).
    """

    method = "ia3"
    targets: tuple[str, ...] = ("k", "v")
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("IA3Config.targets is empty: name roles (q, k, v, o) or module suffixes")

    def peft_config(self, target_regex: str) -> peft.IA3Config:
        return peft.IA3Config(target_modules=target_regex, feedforward_modules=[])


@dataclass
class DoraConfig(LoraConfig):
    """LoRA with ``use_dora=True`` (registered as its own method name for result tables)."""

    method = "dora"
    use_dora: bool = True


def target_module_names(backbone: Backbone, targets: tuple[str, ...], layers: tuple[int, ...] | None) -> list[str]:
    """Full names (within ``backbone.model``) of the modules to adapt, in layer order."""
    roles = projection_names(backbone)
    suffixes = [roles[t] if t in ROLES else t for t in targets]
    stack = encoder_layers(backbone)
    chosen = range(len(stack)) if layers is None else layers
    bad = [i for i in chosen if not -len(stack) <= i < len(stack)]
    if bad:
        raise ValueError(f"layers {bad} do not exist; the encoder has {len(stack)} layers (0..{len(stack) - 1})")
    full = {id(m): n for n, m in backbone.model.named_modules()}
    names = []
    for i in chosen:
        for suffix in suffixes:
            found = [full[id(m)] for n, m in stack[i].named_modules() if n == suffix or n.endswith("." + suffix)]
            if not found:
                raise ValueError(f"layer {i} has no module named {suffix!r}; roles map to {roles}")
            names.extend(found)
    return names


class LoraMethod(PeftMethod):
    """Injects peft adapters into the backbone's network; the base weights stay frozen and untouched."""

    config_class = LoraConfig

    def _attach(self, backbone: Backbone) -> None:
        names = target_module_names(backbone, self.config.targets, self.config.layers)
        regex = "^(" + "|".join(re.escape(n) for n in names) + ")$"
        peft.inject_adapter_in_model(self.config.peft_config(regex), backbone.model)
        # a plain list, not child modules: the adapted layers live inside the backbone
        self._adapted: list[nn.Module] = [m for m in backbone.model.modules() if isinstance(m, BaseTunerLayer)]
        assert len(self._adapted) == len(names), (len(self._adapted), len(names))
        for module in self._adapted:
            for child_name, child in module.named_children():
                if child_name != "base_layer":
                    tag_trainable(child)

    def merge(self) -> None:
        """Fold the adapters into the base weights for inference (outputs unchanged; no adapter compute)."""
        for module in self._adapted:
            module.merge()

    def unmerge(self) -> None:
        """Undo :meth:`merge` (restores the base weights up to float rounding)."""
        for module in self._adapted:
            module.unmerge()

    @property
    def merged(self) -> bool:
        return all(module.merged for module in self._adapted)


class IA3Method(LoraMethod):
    config_class = IA3Config


class DoraMethod(LoraMethod):
    config_class = DoraConfig


def inject_lora(backbone: Backbone, config: LoraConfig | IA3Config) -> LoraMethod:
    """Attach LoRA / DoRA / (IA)^3 to ``backbone`` in place and return the handle (for merge/save)."""
    cls = {"lora": LoraMethod, "dora": DoraMethod, "ia3": IA3Method}[config.method]
    return cls(backbone, config)


def build_lora(backbone: Backbone, **options) -> LoraMethod:
    """Attach LoRA with :class:`LoraConfig` ``options`` (``use_dora=True`` for DoRA)."""
    return inject_lora(backbone, LoraConfig.from_dict(options))


def build_dora(backbone: Backbone, **options) -> LoraMethod:
    """Attach DoRA with :class:`DoraConfig` ``options``."""
    return inject_lora(backbone, DoraConfig.from_dict(options))


def build_ia3(backbone: Backbone, **options) -> LoraMethod:
    """Attach (IA)^3 with :class:`IA3Config` ``options``."""
    return inject_lora(backbone, IA3Config.from_dict(options))
