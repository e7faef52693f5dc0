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
==================  =========================================================================  ==================

``method.options`` go to the method: ``transform`` / ``mapper`` / ``mapper_options`` / ``head`` /
``head_options`` are read here (and ``top_k`` for ``lora`` / ``dora`` / ``ia3``: adapters on the top k encoder
layers, i.e. ``layers = (L-k, ..., L-1)``), everything else is passed to the program's or PEFT method's builder.

Methods that train only above a frozen point (``Built.cut``: prompts 0, adapters or adaption prompts on layers
>= k: k) and the torch probes are trained by the runner on the frozen part's cached activations
(:mod:`reprogram.runtime.prefix`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from reprogram.experiment.config import ConfigError, ExperimentConfig
from reprogram.methods.features import FeatureMethod, MfccFeatures, PerLayerProbeFeatures, ProbeFeatures
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
        model: ``forward(wave (B, N)) -> (B, K)`` logits, trained by :func:`reprogram.experiment.train.train`; ``None``
            for estimator methods.
        sample_rate: the rate the data must be read at.
        modality: the source modality (``image``, ``video``, ``speech``, ``audio``; ``features`` for MFCC).
        components: trainable-parameter counts per component (measured), plus budget details.
        features: a :class:`FeatureMethod` (features computed once, then a classifier fitted on train and
            selected on val) for methods without a torch model; ``None`` otherwise.
        label_names: the backbone's source label names (for label-mapping figures).
        prepare: called once with the center-cropped training dataset before training starts (e.g. prompt
            tuning initialises its prompts from real frames); ``None`` when the method needs nothing.
        cut: the trained part starts at the input of encoder layer ``cut`` (prompt tuning: 0; LoRA on layers
            >= k: k), so the runner may cache the frozen activations below it (:mod:`reprogram.runtime.prefix`);
            ``None`` when the method trains from the waveform.
    """

    model: nn.Module | None
    sample_rate: int
    modality: str
    components: dict = field(default_factory=dict)
    features: FeatureMethod | None = None
    label_names: tuple[str, ...] = ()
    prepare: Callable[[Sequence], None] | None = None
    cut: int | None = None


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
    """The data rate of a program, which resamples its input: the config's, else the backbone's."""
    return int(config.data.sample_rate or backbone.spec.sample_rate or DEFAULT_SAMPLE_RATE)


def _native_rate(config: ExperimentConfig, backbone) -> int:
    """The data rate of a method that feeds waveforms straight to the encoder (PEFT, probes): the backbone's own.

    Raises:
        ConfigError: ``data.sample_rate`` names another rate (the encoder would silently see audio at the wrong
            rate, e.g. 8 kHz audio played as 16 kHz).
    """
    native = backbone.spec.sample_rate
    if native is None:
        raise ConfigError(
            f"method {config.method.name!r} needs a speech backbone with a sample rate; {config.backbone.name!r} "
            f"is a {backbone.spec.modality} model. Fix: use method.name=program with a label mapper"
        )
    if config.data.sample_rate is not None and int(config.data.sample_rate) != int(native):
        raise ConfigError(
            f"data.sample_rate={config.data.sample_rate} but method {config.method.name!r} feeds the waveform "
            f"straight to {config.backbone.name!r}, which expects {native} Hz; set data.sample_rate=null (or "
            f"{native}) so the data are resampled to the backbone's rate"
        )
    return int(native)


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
    from reprogram.mappers.heads import build_head

    spec = backbone.spec
    if spec.num_layers == 0:
        raise ValueError(
            f"head {kind!r} needs a speech backbone with hidden states; {config.backbone.name!r} "
            f"is a {spec.modality} model. Fix: use method.name=program with a label mapper"
        )
    return build_head(kind, spec.num_layers, spec.feature_dim, num_classes, **options)


def _constructor(factory: Callable, options: dict) -> Callable:
    """The class or function a registry factory finally builds (through partials, lazy imports, classmethods and
    the image program's ``program`` choice), whose signature says which options it takes."""
    options = dict(options)
    while isinstance(factory, partial):
        options = {**factory.keywords, **options}
        factory = factory.func
    qualname = getattr(factory, "__qualname__", "")
    if qualname.startswith("lazy("):  # reprogram.registry.lazy: "lazy(module.attr)"
        module, attr = qualname[5:-1].rsplit(".", 1)
        factory = getattr(importlib.import_module(module), attr)
    if inspect.ismethod(factory) and inspect.isclass(factory.__self__):  # Mapper.from_backbone -> the mapper class
        factory = factory.__self__
    if "program" in options and hasattr(importlib.import_module(factory.__module__), "build_canvas_program"):
        from reprogram.transforms.canvas import CANVAS_PROGRAMS

        factory = CANVAS_PROGRAMS.get(options["program"], factory)
    return factory


def _with_seed(registry: Registry, name: str, options: dict, seed: int) -> dict:
    """``options`` plus ``seed=seed`` when ``registry[name]`` takes a ``seed`` and the options do not set one."""
    if "seed" in options:
        return options
    factory, _ = registry.resolve(name)
    try:
        takes = "seed" in inspect.signature(_constructor(factory, options)).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        takes = False
    return {**options, "seed": seed} if takes else options


def build_program(config: ExperimentConfig, classes: list) -> Built:
    """Reprogramming: ``TRANSFORMS[options.transform]`` -> frozen backbone -> ``MAPPERS[options.mapper]``.

    With ``options.head`` (speech backbones) the mapper is replaced by a head on the hidden states.
    """
    from reprogram import mappers, transforms
    from reprogram.methods.program import ReprogrammedModel

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
    opts = _with_seed(transforms.TRANSFORMS, name, opts, config.seed)
    mapper_options = _with_seed(mappers.MAPPERS, mapper, mapper_options, config.seed)
    transform = transforms.create(name, spec=spec, sample_rate=rate, **opts)
    if head is not None:
        from reprogram.mappers.heads import SpeechClassifier

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
        from reprogram.mappers.heads import SpeechClassifier

        opts = dict(config.method.options)
        head = opts.pop("head", "linear")
        head_options = dict(opts.pop("head_options", {}))
        if config.method.budget is not None:
            if method not in PEFT_BUDGET:
                raise ValueError(f"method {method!r} has no budget knob; set method.budget=null")
            opts[PEFT_BUDGET[method]] = config.method.budget
        backbone = _backbone(config)
        rate = _native_rate(config, backbone)
        _top_k(method, opts, backbone)
        handle = peft.apply(backbone, method, **opts)
        model = SpeechClassifier(backbone, _head(config, backbone, len(classes), head, head_options))
        counts = {**component_counts(model), "method": peft.trainable_parameters(backbone)}
        prepare = None
        if hasattr(handle, "init_from_frames"):  # prompt tuning starts from real frames, as benchmarks/peft_speech

            def prepare(train_data: Sequence) -> None:
                init_prompts_from_frames(backbone, handle, train_data, config.seed)

        cut = _cut(method, opts, backbone.num_layers)
        return Built(model, rate, backbone.spec.modality, counts, prepare=prepare, cut=cut)

    return build_peft


#: PEFT methods whose adapters live in ``options.layers`` only (``options.top_k`` chooses the top k)
LAYERED = ("lora", "dora", "ia3")


def _top_k(method: str, opts: dict, backbone) -> None:
    """Turn ``options.top_k = k`` into ``layers = (L-k, ..., L-1)`` in place (adapters on the top k layers).

    Raises:
        ConfigError: ``top_k`` on a method without layers, together with ``layers``, or outside ``1..L``.
    """
    if "top_k" not in opts:
        return
    k, n = opts.pop("top_k"), int(getattr(backbone, "num_layers", 0))
    if method not in LAYERED:
        raise ConfigError(f"method.options.top_k is for {LAYERED} (adapters on the top k layers); remove it for "
                          f"{method!r}")
    if "layers" in opts:
        raise ConfigError("set method.options.top_k or method.options.layers, not both")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ConfigError(f"method.options.top_k={k!r}; use an integer in 1..{n} (the encoder has {n} layers)")
    opts["layers"] = tuple(range(n - k, n))


def _cut(method: str, opts: dict, num_layers: int) -> int | None:
    """The first encoder layer a PEFT method trains in (its input is the cut), or None (trains everywhere)."""
    if method in ("prompt", "deep_prompt"):
        return 0  # shallow prompts enter layer 0; deep prompts enter every layer
    if method == "adaption":  # gated prompts in the top num_layers layers (None: all)
        return num_layers - int(opts.get("num_layers") or num_layers)
    if method in LAYERED and opts.get("layers"):
        return min(int(i) % num_layers for i in opts["layers"])
    return None


@torch.no_grad()
def init_prompts_from_frames(backbone, handle, train_data: Sequence, seed: int, clips: int = 8) -> None:
    """Set prompt tuning's prompts to frames of the UNPROMPTED backbone on the first ``clips`` training clips.

    The prompt wrappers (instance ``forward`` attributes of the encoder layers) are set aside for that one
    forward pass, so the frames are the plain model's, as ``benchmarks/peft_speech.py`` draws them before
    attaching.

    Args:
        backbone: the speech backbone ``handle`` is attached to.
        handle: the attached :class:`reprogram.peft.prompt.PromptTuning`.
        train_data: items ``(wave (N,), target, ...)`` of the training split (deterministic crop).
        seed: seed of the frame sampling.
        clips: how many clips give frames.
    """
    from reprogram.peft.base import encoder_layers

    waves = torch.stack([train_data[i][0] for i in range(min(clips, len(train_data)))])  # (B, N)
    wrapped = {layer: vars(layer).pop("forward") for layer in encoder_layers(backbone) if "forward" in vars(layer)}
    was = backbone.training
    try:
        backbone.eval()
        plain = backbone(waves)  # hidden states: L + 1 tensors (B, T, D)
    finally:
        backbone.train(was)
        for layer, forward in wrapped.items():
            layer.forward = forward
    handle.init_from_frames(plain.hidden_states, plain.mask, seed=seed)


def probe_builder(head: str) -> Builder:
    """A frozen speech backbone with a trained head ``head`` (``linear``, ``weighted_sum``, ``attentive``)."""

    def build_probe(config: ExperimentConfig, classes: list) -> Built:
        from reprogram.mappers.heads import SpeechClassifier

        opts = dict(config.method.options)
        if config.method.budget is not None:
            raise ValueError(f"probes have no budget knob; set method.budget=null (got {config.method.budget})")
        backbone = _backbone(config)
        model = SpeechClassifier(backbone, _head(config, backbone, len(classes), head, opts))
        return Built(model, _native_rate(config, backbone), backbone.spec.modality, component_counts(model))

    return build_probe


def build_mfcc(config: ExperimentConfig, classes: list) -> Built:
    """MFCC (+ deltas) statistics with ``options.classifier`` (``logreg`` | ``random_forest``); no backbone.

    Other options go to :func:`reprogram.methods.mfcc.mfcc_features` (``n_mfcc``, ``deltas`` ...).
    """
    opts = dict(config.method.options)
    classifier = opts.pop("classifier", "logreg")
    if config.method.budget is not None:
        raise ValueError("the MFCC baseline has no budget knob; set method.budget=null")
    rate = int(config.data.sample_rate or DEFAULT_SAMPLE_RATE)
    return Built(None, rate, "features", {}, features=MfccFeatures(classifier, config.seed, **opts))


def build_linear_probe(config: ExperimentConfig, classes: list) -> Built:
    """Linear probe on cached features of hidden state ``options.layer`` (default -1, the last); ``options.cs``
    lists the candidate inverse regularisation strengths (chosen on validation). ``per_layer_probe``: one such
    probe per hidden state, the layer chosen on validation (no ``layer`` option)."""
    opts = dict(config.method.options)
    per_layer = config.method.name == "per_layer_probe"
    layer, cs = int(opts.pop("layer", -1)) if not per_layer else None, opts.pop("cs", None)
    if opts or config.method.budget is not None:
        raise ValueError(
            f"{config.method.name} takes option{'' if per_layer else 's layer and'} cs only and no budget; got "
            f"{sorted(opts)}, budget={config.method.budget}"
        )
    backbone = _backbone(config)
    if backbone.spec.num_layers == 0:
        raise ValueError(
            f"linear_probe needs a speech backbone with hidden states; {config.backbone.name!r} is a "
            f"{backbone.spec.modality} model"
        )
    return Built(
        None,
        _native_rate(config, backbone),
        backbone.spec.modality,
        {},
        features=PerLayerProbeFeatures(backbone, config.seed, cs) if per_layer
        else ProbeFeatures(backbone, layer, config.seed, cs),
    )


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
