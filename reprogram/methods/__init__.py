"""The METHODS registry: experiment config -> a model the training loop trains (or a fitted estimator).

One registration line per method. A builder takes ``(config, classes)`` and returns a :class:`Built`:

==================  =========================================================================  ==================
name                what                                                                       ``method.budget``
==================  =========================================================================  ==================
``program``         reprogramming: input program + frozen backbone + label mapper / head        the program's knob
``lora``            LoRA adapters on the attention projections (peft) + head                   rank r
``dora``            DoRA (peft ``use_dora``) + head                                            rank r
``ia3``             IA3 scaling vectors + head                                                 (none)
``prompt``          shallow prompt tuning after the feature encoder + head                     prompt length
``deep_prompt``     per-layer (deep / prefix-style) prompts + head                             prompt length
``adaption``        attention prompting, zero-initialised gate (LLaMA-Adapter) + head          prompt length
``finetune``        full fine-tuning + head (the upper reference)                              (none)
``linear_probe``    logistic regression on a cached hidden state (``options.layer``; C on val)  (none)
``per_layer_probe`` a linear probe per hidden state, the layer chosen on validation           (none)
``weighted_probe``  SUPERB weighted sum of all hidden states + linear head                     (none)
``attentive_probe`` attentive pooling of the last hidden state + linear head                   (none)
``mfcc``            MFCC (+ deltas) statistics + logistic regression / random forest          (none)
``image_probe``     logistic regression on an image/video net's features of a program's canvas   the program's
``simclr``          SimCLR-pretrained spectrogram CNN (train clips only) + logistic regression  (none)
==================  =========================================================================  ==================

``method.options`` go to the method: ``transform`` / ``mapper`` / ``mapper_options`` / ``head`` /
``head_options`` are read here (and ``top_k`` for ``lora`` / ``dora`` / ``ia3``: adapters on the top k encoder
layers, i.e. ``layers = (L-k, ..., L-1)``), everything else is passed to the program's or PEFT method's builder.

Methods that train only above a frozen point (``Built.cut``: prompts 0, adapters or adaption prompts on layers
>= k: k) and the torch probes train on the frozen part's cached activations (:mod:`reprogram.runtime.prefix`).

One module per family, one registration line per method: :mod:`~reprogram.methods.program` (reprogramming),
:mod:`~reprogram.methods.adapters` (PEFT), :mod:`~reprogram.methods.probes` (torch probes and the probe
library), :mod:`~reprogram.methods.linear_probe` (probes fitted on cached features), :mod:`~reprogram.methods.mfcc`.
How a method learns is its kind (:mod:`~reprogram.methods.base`): torch models are trained by
:data:`~reprogram.methods.trained.TRAINED`, feature methods fitted by :data:`~reprogram.methods.features.FITTED`.
To add a method: write its module with a builder ``(config, classes) -> Built`` and add one line below.
"""

from __future__ import annotations

from reprogram.methods.adapters import LAYERED, PEFT_BUDGET, init_prompts_from_frames, peft_builder
from reprogram.methods.base import (
    DEFAULT_SAMPLE_RATE,
    DEFAULT_TRANSFORM,
    METHODS,
    NO_BACKBONE,
    Builder,
    Built,
    MethodKind,
    RunContext,
    component_counts,
)
from reprogram.methods.features import FITTED, FeatureMethod
from reprogram.methods.image_probe import build_image_probe
from reprogram.methods.linear_probe import PerLayerProbeFeatures, ProbeFeatures, build_linear_probe
from reprogram.methods.mfcc import MfccFeatures, build_mfcc
from reprogram.methods.probes import probe_builder
from reprogram.methods.program import build_program
from reprogram.methods.simclr import build_simclr
from reprogram.methods.trained import TRAINED

__all__ = [
    "DEFAULT_SAMPLE_RATE", "DEFAULT_TRANSFORM", "FITTED", "LAYERED", "METHODS", "NO_BACKBONE", "PEFT_BUDGET",
    "TRAINED", "Builder", "Built", "FeatureMethod", "MethodKind", "MfccFeatures", "PerLayerProbeFeatures",
    "ProbeFeatures", "RunContext", "build", "component_counts", "init_prompts_from_frames",
]


def build(config, classes: list[str]) -> Built:
    """Build ``config.method.name`` for the K = ``len(classes)`` target classes."""
    if config.method.name not in METHODS:
        raise KeyError(f"unknown method {config.method.name!r} (method.name); known methods: {METHODS.names()}")
    return METHODS.create(config.method.name, config=config, classes=list(classes))


# Registration lines: one per method.
METHODS.register("program", build_program)
METHODS.register("lora", peft_builder("lora"))
METHODS.register("dora", peft_builder("dora"))
METHODS.register("ia3", peft_builder("ia3"))
METHODS.register("prompt", peft_builder("prompt"))
METHODS.register("deep_prompt", peft_builder("deep_prompt"))
METHODS.register("adaption", peft_builder("adaption"))
METHODS.register("finetune", peft_builder("finetune"))
METHODS.register("linear_probe", build_linear_probe)
METHODS.register("per_layer_probe", build_linear_probe)
METHODS.register("weighted_probe", probe_builder("weighted_sum"))
METHODS.register("attentive_probe", probe_builder("attentive"))
METHODS.register("mfcc", build_mfcc)
METHODS.register("image_probe", build_image_probe)
METHODS.register("simclr", build_simclr)
