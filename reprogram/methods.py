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
``linear_probe``    linear head on the frozen last hidden state                                (none)
``weighted_probe``  SUPERB weighted sum of all hidden states + linear head                     (none)
``attentive_probe`` attentive pooling of the last hidden state + linear head                   (none)
``mfcc``            MFCC (+ deltas) statistics + logistic regression / random forest          (none)
==================  =========================================================================  ==================

``method.options`` go to the method: ``transform`` / ``mapper`` / ``mapper_options`` / ``head`` /
``head_options`` are read here, everything else is passed to the program's or PEFT method's builder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from reprogram.config import ExperimentConfig
from reprogram.registry import Registry

#: data rate used when neither the config nor the backbone's spec names one (pixel backbones)
DEFAULT_SAMPLE_RATE = 16_000
#: default program per backbone modality
DEFAULT_TRANSFORM = {"image": "pad", "video": "video", "speech": "wave_embed", "audio": "wave_embed"}
#: methods that use no backbone -> the backbone name sweeps give them (so their run ids ignore the backbone grid)
NO_BACKBONE = {"mfcc": "none"}
#: which PEFT option ``method.budget`` sets
PEFT_BUDGET = {"lora": "r", "dora": "r", "prompt": "length", "deep_prompt": "length", "adaption": "length"}


@dataclass
class Built:
    """A method ready to train or fit.

    Attributes:
        model: ``forward(wave (B, N)) -> (B, K)`` logits, trained by :func:`reprogram.train.train`; ``None``
            for estimator methods.
        sample_rate: the rate the data must be read at.
        modality: the source modality (``image``, ``video``, ``speech``, ``audio``; ``features`` for MFCC).
        components: trainable-parameter counts per component (measured), plus budget details.
        estimator: a scikit-learn style estimator ``fit(features, y)`` / ``predict_proba(features)`` with a
            ``featurize(waves (M, N), sample_rate) -> (M, D)`` function in ``featurize``; ``None`` for models.
        featurize: see ``estimator``.
        label_names: the backbone's source label names (for label-mapping figures).
    """

    model: nn.Module | None
    sample_rate: int
    modality: str
    components: dict = field(default_factory=dict)
    estimator: Any = None
    featurize: Callable | None = None
    label_names: tuple[str, ...] = ()


Builder = Callable[[ExperimentConfig, list], Built]
METHODS: Registry[Built] = Registry("method")


def build(config: ExperimentConfig, classes: list[str]) -> Built:
    """Build ``config.method.name`` for the K = ``len(classes)`` target classes."""
    if config.method.name not in METHODS:
        raise KeyError(f"unknown method {config.method.name!r} (method.name); known methods: {METHODS.names()}")
    return METHODS.create(config.method.name, config=config, classes=list(classes))


def _backbone(config: ExperimentConfig):
    import backbones

    return backbones.create(config.backbone.name, **config.backbone.options)


def _rate(config: ExperimentConfig, backbone) -> int:
    return int(config.data.sample_rate or backbone.spec.sample_rate or DEFAULT_SAMPLE_RATE)


def component_counts(model: nn.Module) -> dict[str, int]:
    """Trainable scalars per top-level child of ``model`` and in total (each tensor counted once)."""
    seen: set[int] = set()
    out: dict[str, int] = {}
    for name, child in model.named_children():
        n = 0
        for p in child.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        out[name] = n
    out["total"] = sum(out.values())
    return out


def _head(config: ExperimentConfig, backbone, num_classes: int, kind: str, options: dict) -> nn.Module:
    from reprogram.heads import build_head

    spec = backbone.spec
    if spec.num_layers == 0:
        raise ValueError(f"head {kind!r} needs a speech backbone with hidden states; {config.backbone.name!r} "
                         f"is a {spec.modality} model. Fix: use method.name=program with a label mapper")
    return build_head(kind, spec.num_layers, spec.feature_dim, num_classes, **options)


def build_program(config: ExperimentConfig, classes: list) -> Built:
    """Reprogramming: ``TRANSFORMS[options.transform]`` -> frozen backbone -> ``MAPPERS[options.mapper]``.

    With ``options.head`` (speech backbones) the mapper is replaced by a head on the hidden states.
    """
    from reprogram import mappers, transforms
    from reprogram.model import ReprogrammedModel

    opts = dict(config.method.options)
    backbone = _backbone(config)
    spec, rate = backbone.spec, _rate(config, backbone)
    name = opts.pop("transform", DEFAULT_TRANSFORM[spec.modality])
    mapper = opts.pop("mapper", "linear" if spec.num_labels else "feature_linear")
    mapper_options = dict(opts.pop("mapper_options", {}))
    head = opts.pop("head", None)
    head_options = dict(opts.pop("head_options", {}))
    if config.method.budget is not None:
        opts["budget"] = config.method.budget
    if spec.modality in ("speech", "audio"):
        opts.setdefault("clip_seconds", config.data.clip_seconds)
    transform = transforms.create(name, spec=spec, sample_rate=rate, **opts)
    if head is not None:
        from reprogram.heads import SpeechClassifier

        model = SpeechClassifier(backbone, _head(config, backbone, len(classes), head, head_options), program=transform)
        counts = {**component_counts(model), "budget": getattr(transform, "budget", None)}
    else:
        if mapper == "semantic":
            mapper_options.setdefault("class_names", list(classes))
        model = ReprogrammedModel(transform, backbone, mappers.create(mapper, backbone, len(classes), **mapper_options))
        counts = model.budget()
    return Built(model, rate, spec.modality, counts, label_names=tuple(spec.label_names))


def peft_builder(method: str) -> Builder:
    """Builder of PEFT ``method`` (a name of ``reprogram.peft.PEFT_METHODS``) plus a head (``options.head``)."""

    def build_peft(config: ExperimentConfig, classes: list) -> Built:
        from reprogram import peft
        from reprogram.heads import SpeechClassifier

        opts = dict(config.method.options)
        head = opts.pop("head", "linear")
        head_options = dict(opts.pop("head_options", {}))
        if config.method.budget is not None:
            if method not in PEFT_BUDGET:
                raise ValueError(f"method {method!r} has no budget knob; set method.budget=null")
            opts[PEFT_BUDGET[method]] = config.method.budget
        backbone = _backbone(config)
        peft.apply(backbone, method, **opts)
        model = SpeechClassifier(backbone, _head(config, backbone, len(classes), head, head_options))
        counts = {**component_counts(model), "method": peft.trainable_parameters(backbone)}
        return Built(model, _rate(config, backbone), backbone.spec.modality, counts)

    return build_peft


def probe_builder(head: str) -> Builder:
    """A frozen speech backbone with a trained head ``head`` (``linear``, ``weighted_sum``, ``attentive``)."""

    def build_probe(config: ExperimentConfig, classes: list) -> Built:
        from reprogram.heads import SpeechClassifier

        opts = dict(config.method.options)
        if config.method.budget is not None:
            raise ValueError(f"probes have no budget knob; set method.budget=null (got {config.method.budget})")
        backbone = _backbone(config)
        model = SpeechClassifier(backbone, _head(config, backbone, len(classes), head, opts))
        return Built(model, _rate(config, backbone), backbone.spec.modality, component_counts(model))

    return build_probe


def build_mfcc(config: ExperimentConfig, classes: list) -> Built:
    """MFCC (+ deltas) statistics with ``options.classifier`` (``logreg`` | ``random_forest``); no backbone."""
    from functools import partial

    from reprogram.baselines.mfcc import make_classifier, mfcc_features

    opts = dict(config.method.options)
    classifier = opts.pop("classifier", "logreg")
    if config.method.budget is not None:
        raise ValueError("the MFCC baseline has no budget knob; set method.budget=null")
    rate = int(config.data.sample_rate or DEFAULT_SAMPLE_RATE)
    estimator = make_classifier(classifier, seed=config.seed)
    featurize = partial(mfcc_features, **opts)
    return Built(None, rate, "features", {"total": 0}, estimator=estimator, featurize=featurize)


# Registration lines: one per method.
METHODS.register("program", build_program)
for _name in ("lora", "dora", "ia3", "prompt", "deep_prompt", "adaption", "finetune"):
    METHODS.register(_name, peft_builder(_name))
METHODS.register("linear_probe", probe_builder("linear"))
METHODS.register("weighted_probe", probe_builder("weighted_sum"))
METHODS.register("attentive_probe", probe_builder("attentive"))
METHODS.register("mfcc", build_mfcc)
