"""Parameter-efficient fine-tuning of frozen speech encoders: one registry, one registration line per method.

``apply(backbone, "lora", r=8)`` attaches a method in place and returns its handle; the backbone's
``parameters()`` then list exactly the method's trainable tensors (``backbone.num_parameters(True)``).
Heads live in :mod:`reprogram.mappers.heads`, probes in :mod:`reprogram.methods.probes`, save/load in
:mod:`reprogram.peft.io`.
"""

from __future__ import annotations

from backbones.base import Backbone
from reprogram.peft.base import PeftConfig, PeftMethod
from reprogram.registry import Registry, lazy

PEFT_METHODS: Registry[PeftMethod] = Registry("PEFT method")

# Registration lines: name -> factory(backbone, **options).
PEFT_METHODS.register("lora", lazy("reprogram.peft.lora", "build_lora"))
PEFT_METHODS.register("dora", lazy("reprogram.peft.lora", "build_dora"))
PEFT_METHODS.register("ia3", lazy("reprogram.peft.lora", "build_ia3"))
PEFT_METHODS.register("prompt", lazy("reprogram.peft.prompt", "build"))
PEFT_METHODS.register("deep_prompt", lazy("reprogram.peft.prompt", "build_deep"))
PEFT_METHODS.register("adaption", lazy("reprogram.peft.adaption", "build"))
PEFT_METHODS.register("finetune", lazy("reprogram.peft.finetune", "build"))


def apply(backbone: Backbone, method: str, **options) -> PeftMethod:
    """Attach PEFT ``method`` (a registered name) with its config ``options`` to ``backbone`` in place."""
    return PEFT_METHODS.create(method, backbone=backbone, **options)


def trainable_parameters(backbone: Backbone) -> int:
    """Number of trainable parameters inside the backbone (the method's budget, heads excluded)."""
    return backbone.num_parameters(trainable_only=True)


__all__ = ["PEFT_METHODS", "PeftConfig", "PeftMethod", "apply", "trainable_parameters"]
