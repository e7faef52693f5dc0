"""What every method shares: :class:`Built` (a method ready to train or fit), the :class:`RunContext` a run hands
it, the :class:`MethodKind` protocol by which it is trained or fitted, and the small helpers builders use.

The runner never knows how a method learns. It builds the method, prepares a :class:`RunContext` (the split's
tables, center-crop datasets, the decoded-clip caches, the results folder) and calls ``built.fit(context)``,
which hands over to the method's kind:

* :data:`reprogram.methods.trained.TRAINED`: a torch model trained by the one training loop
  (:func:`reprogram.experiment.train.train`), on a cached frozen prefix where the method allows it;
* :data:`reprogram.methods.features.FITTED`: features computed once per clip, a classifier fitted on train and
  selected on val.

A new method is one module with a builder ``(config, classes) -> Built`` plus one registration line in
:mod:`reprogram.methods`; it gets a kind for free (a ``model`` is trained, ``features`` are fitted) or brings
its own ``kind``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from torch import nn

from reprogram.experiment.config import ConfigError, ExperimentConfig
from reprogram.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from reprogram.data.records import ClipTable
    from reprogram.methods.features import FeatureMethod

#: data rate used when neither the config nor the backbone's spec names one (pixel backbones)
DEFAULT_SAMPLE_RATE = 16_000
#: default program per backbone modality
DEFAULT_TRANSFORM = {"image": "pad", "video": "video", "speech": "wave_embed", "audio": "wave_embed"}
#: methods that use no backbone -> the backbone name sweeps give them (so their run ids ignore the backbone grid)
NO_BACKBONE = {"mfcc": "none", "simclr": "none"}


@dataclass
class RunContext:
    """Everything a run has prepared for its method to train or fit on.

    Attributes:
        config: the fully resolved experiment config.
        classes: target class names (index = target).
        positive: index of the positive class for detection metrics, else ``None``.
        table: the whole clip table (every part's rows index into it).
        rows: part name (``train``, ``val``, ``test``) -> row indices of ``table``.
        parts: part name -> its clip table (``external`` too, when an external test set is given).
        caches: part name -> decoded-clip mapping shared by that part's datasets.
        eval_sets: part name -> center-crop ``WaveformDataset`` (the parts scored after training).
        full: center-crop dataset of the whole ``table``.
        folder: the run's folder (``DIR/runs/<run id>``); written by rank 0 only.
        cache_dir: the disk cache folder, or ``None`` (memory only).
        progress: show progress bars (``None``: only on a terminal).
        is_main: this process is rank 0 (always, outside ``torchrun``).
        distributed: the run is data-parallel under ``torchrun``.
        prefix_cache: methods above a frozen prefix may train on its cached activations.
    """

    config: ExperimentConfig
    classes: list[str]
    positive: int | None
    table: ClipTable
    rows: dict[str, list[int]]
    parts: dict[str, ClipTable]
    caches: Mapping[str, MutableMapping]
    eval_sets: dict[str, Sequence]
    full: Sequence
    folder: Path
    cache_dir: Path | None = None
    progress: bool | None = None
    is_main: bool = True
    distributed: bool = False
    prefix_cache: bool = True


class MethodKind(Protocol):
    """How a family of methods learns: ``fit(built, context)`` trains or fits and scores every part.

    ``fit`` returns the result's method-specific sections (``params``, ``metrics``, ``training``,
    ``label_mapping``, ``predictions``, ``prefix_cache``) on rank 0 and ``None`` on other ranks.
    ``parallel`` says whether every ``torchrun`` rank takes part (``False``: rank 0 alone fits).
    """

    parallel: bool

    def fit(self, built: Built, context: RunContext) -> dict | None: ...  # pragma: no cover


@dataclass
class Built:
    """A method ready to train or fit.

    Attributes:
        model: ``forward(wave (B, N)) -> (B, K)`` logits, trained by :func:`reprogram.experiment.train.train`;
            ``None`` for estimator methods.
        sample_rate: the rate the data must be read at.
        modality: the source modality (``image``, ``video``, ``speech``, ``audio``; ``features`` for MFCC).
        components: trainable-parameter counts per component (measured), plus budget details.
        features: a :class:`~reprogram.methods.features.FeatureMethod` (features computed once, then a classifier
            fitted on train and selected on val) for methods without a torch model; ``None`` otherwise.
        label_names: the backbone's source label names (for label-mapping figures).
        prepare: called once with the center-cropped training dataset before training starts (e.g. prompt
            tuning initialises its prompts from real frames); ``None`` when the method needs nothing.
        cut: the trained part starts at the input of encoder layer ``cut`` (prompt tuning: 0; LoRA on layers
            >= k: k), so the frozen activations below it may be cached (:mod:`reprogram.runtime.prefix`);
            ``None`` when the method trains from the waveform.
        kind: how the method learns (:class:`MethodKind`); default: trained when it has a ``model``, fitted when
            it has ``features``.
    """

    model: nn.Module | None
    sample_rate: int
    modality: str
    components: dict = field(default_factory=dict)
    features: FeatureMethod | None = None
    label_names: tuple[str, ...] = ()
    prepare: Callable[[Sequence], None] | None = None
    cut: int | None = None
    kind: MethodKind | None = None

    def __post_init__(self) -> None:
        if self.kind is None:
            if self.model is not None:
                from reprogram.methods.trained import TRAINED

                self.kind = TRAINED
            elif self.features is not None:
                from reprogram.methods.features import FITTED

                self.kind = FITTED
            else:
                raise ValueError("a Built method needs a model (trained), features (fitted) or its own kind")

    def fit(self, context: RunContext) -> dict | None:
        """Train or fit on ``context`` and score every part (its kind's ``fit``)."""
        return self.kind.fit(self, context)


Builder = Callable[[ExperimentConfig, list], Built]
METHODS: Registry[Built] = Registry("method")


def backbone_of(config: ExperimentConfig):
    """The frozen backbone ``config.backbone`` names (``backbones.create``)."""
    import backbones

    return backbones.create(config.backbone.name, **config.backbone.options)


def program_rate(config: ExperimentConfig, backbone) -> int:
    """The data rate of a program, which resamples its input: the config's, else the backbone's."""
    return int(config.data.sample_rate or backbone.spec.sample_rate or DEFAULT_SAMPLE_RATE)


def native_rate(config: ExperimentConfig, backbone) -> int:
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


def speech_head(config: ExperimentConfig, backbone, num_classes: int, kind: str, options: dict) -> nn.Module:
    """Head ``kind`` (:func:`reprogram.mappers.heads.build_head`) on a speech backbone's hidden states."""
    from reprogram.mappers.heads import build_head

    spec = backbone.spec
    if spec.num_layers == 0:
        raise ValueError(
            f"head {kind!r} needs a speech backbone with hidden states; {config.backbone.name!r} "
            f"is a {spec.modality} model. Fix: use method.name=program with a label mapper"
        )
    return build_head(kind, spec.num_layers, spec.feature_dim, num_classes, **options)


def constructor(factory: Callable, options: dict) -> Callable:
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


def with_seed(registry: Registry, name: str, options: dict, seed: int) -> dict:
    """``options`` plus ``seed=seed`` when ``registry[name]`` takes a ``seed`` and the options do not set one."""
    if "seed" in options:
        return options
    factory, _ = registry.resolve(name)
    try:
        takes = "seed" in inspect.signature(constructor(factory, options)).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        takes = False
    return {**options, "seed": seed} if takes else options

