"""``ReprogrammedModel(transform, backbone, mapper)``: waveform -> program -> frozen backbone -> mapper.

Only the transform (program) and the mapper/head train; the backbone stays frozen. :meth:`budget` measures
the exact trainable-parameter count of every component from the modules themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn

from backbones.base import Backbone, BackboneOutput
from reprogram.mappers.base import LabelMapper
from reprogram.transforms.base import InputTransform


def _count(params: Iterable[nn.Parameter], seen: set[int]) -> int:
    """Trainable scalars among ``params`` not already in ``seen`` (each tensor counted once)."""
    total = 0
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(wave (B, N), target (B,))`` from a loader batch: a ``(wave, target, ...)`` tuple or a dict."""
    if isinstance(batch, dict):
        try:
            return batch["wave"], batch["target"]
        except KeyError as err:
            raise KeyError(f"batch dict needs 'wave' and 'target' keys, has {sorted(batch)}") from err
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise ValueError(f"a batch must be (wave, target, ...) or a dict with wave/target, got {type(batch).__name__}")


class ReprogrammedModel(nn.Module):
    """A frozen backbone between a learned input transform and a label mapper (or head).

    Args:
        transform: the program, built on ``backbone.spec``.
        backbone: the frozen source model.
        mapper: maps the backbone's logits (``input_kind == "logits"``) or pooled features (``"features"``)
            to the K target classes.
    """

    def __init__(self, transform: InputTransform, backbone: Backbone, mapper: LabelMapper) -> None:
        super().__init__()
        if transform.spec != backbone.spec:
            raise ValueError(
                f"the transform was built for {transform.spec.summary()} but backbone "
                f"{getattr(backbone, 'name', '?')!r} takes {backbone.spec.summary()}; build it with spec=backbone.spec"
            )
        kind = getattr(mapper, "input_kind", "logits")
        width = backbone.spec.num_labels if kind == "logits" else backbone.spec.feature_dim
        if kind not in ("logits", "features"):
            raise ValueError(f"mapper input_kind {kind!r} unknown; use 'logits' or 'features'")
        if mapper.num_sources != width:
            raise ValueError(
                f"{type(mapper).__name__} expects {mapper.num_sources} {kind} but backbone "
                f"{getattr(backbone, 'name', '?')!r} gives {width}; build it with MAPPERS.create(name, backbone, K)"
            )
        self.transform, self.backbone, self.mapper = transform, backbone, mapper

    @property
    def num_targets(self) -> int:
        return self.mapper.num_targets

    def source(self, wave: torch.Tensor) -> BackboneOutput:
        """Args: wave: ``(B, N)``. Returns: the backbone's output on the programmed input."""
        return self.backbone(self.transform(wave))

    def mapper_input(self, out: BackboneOutput) -> torch.Tensor:
        """The ``(B, S)`` tensor the mapper reads (logits or features)."""
        if self.mapper.input_kind == "features":
            return out.features
        if out.logits is None:
            raise ValueError(f"backbone {getattr(self.backbone, 'name', '?')!r} returns no logits; use a feature head")
        return out.logits

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Args: wave: ``(B, N)`` waveforms at the transform's data rate. Returns: ``(B, K)`` logits."""
        return self.mapper(self.mapper_input(self.source(wave)))

    def trainable(self) -> Iterator[nn.Parameter]:
        """The parameters an optimizer should see (program and mapper; never the frozen backbone)."""
        return (p for p in self.parameters() if p.requires_grad)

    def budget(self) -> dict:
        """Exact trainable-parameter counts per component, measured from the modules.

        Returns:
            ``{"program", "mapper", "head", "backbone", "total"}`` counts (``mapper`` when the mapper reads
            source logits, ``head`` when it reads features), ``"program_parts"`` per named child of the
            transform, ``"budget"`` (the transform's budget knob) and ``"budget_doc"`` (what it means), and
            the perturbation's ``"l2"`` / ``"linf"`` norms where the program has one. Parameters shared between
            components are counted once, in the first component listed.
        """
        seen: set[int] = set()
        program = _count(self.transform.parameters(), seen)
        parts = {name: _count(child.parameters(), set()) for name, child in self.transform.named_children()}
        mapped = _count(self.mapper.parameters(), seen)
        backbone = _count(self.backbone.parameters(), seen)
        is_head = self.mapper.input_kind == "features"
        out = {
            "program": program,
            "mapper": 0 if is_head else mapped,
            "head": mapped if is_head else 0,
            "backbone": backbone,
            "total": program + mapped + backbone,
            "program_parts": {k: v for k, v in parts.items() if v},
            "budget": getattr(self.transform, "budget", None),
            "budget_doc": self.transform.budget_doc,
        }
        out.update(self.transform.perturbation_norms())
        assert out["total"] == sum(p.numel() for p in self.parameters() if p.requires_grad)
        return out

    @torch.no_grad()
    def source_outputs(self, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
        """Mapper inputs ``(M, S)`` and targets ``(M,)`` over ``loader``, with the current program applied."""
        was_training = self.training
        self.eval()
        first = next(iter(self.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
        sources, targets = [], []
        try:
            for batch in loader:
                wave, target = split_batch(batch)
                sources.append(self.mapper_input(self.source(wave.to(device))).float().cpu())
                targets.append(torch.as_tensor(target).long().cpu())
        finally:
            self.train(was_training)
        if not sources:
            raise ValueError("fit_mapper got an empty loader; the training split has no clips")
        return torch.cat(sources), torch.cat(targets)

    def fit_mapper(self, loader: Iterable) -> bool:
        """Fit a data-fitted mapper (FLM, ILM) on ``loader`` through the current program.

        Returns:
            True when the mapper was fitted, False when it is not fitted from data.
        """
        if not self.mapper.needs_fit:
            return False
        self.mapper.fit(*self.source_outputs(loader))
        return True

    def start_epoch(self, loader: Iterable, epoch: int) -> bool:
        """Call at the start of every epoch: fits FLM once (first epoch, or whenever it is still unfitted, e.g.
        after resuming without its state) and ILM every epoch.

        Returns:
            True when the mapper was (re)fitted.
        """
        unfitted = not getattr(self.mapper, "is_fitted", False)
        if self.mapper.needs_fit and (epoch == 0 or unfitted or self.mapper.refit_every_epoch):
            return self.fit_mapper(loader)
        return False


def build_program(config, classes: list):
    """Reprogramming: ``TRANSFORMS[options.transform]`` -> frozen backbone -> ``MAPPERS[options.mapper]``.

    With ``options.head`` (speech backbones) the mapper is replaced by a head on the hidden states.
    """
    from reprogram import mappers, transforms
    from reprogram.mappers.heads import SpeechClassifier
    from reprogram.methods.base import (
        DEFAULT_TRANSFORM,
        Built,
        backbone_of,
        component_counts,
        program_rate,
        speech_head,
        with_seed,
    )

    opts = dict(config.method.options)
    backbone = backbone_of(config)
    spec, rate = backbone.spec, program_rate(config, backbone)
    name = opts.pop("transform", DEFAULT_TRANSFORM[spec.modality])
    mapper = opts.pop("mapper", "linear" if spec.num_labels else "feature_linear")
    mapper_options = dict(opts.pop("mapper_options", {}))
    head = opts.pop("head", None)
    head_options = dict(opts.pop("head_options", {}))
    if config.method.budget is not None:
        opts["budget"] = config.method.budget
    if spec.modality in ("speech", "audio"):
        opts.setdefault("clip_seconds", config.data.clip_seconds)
    opts = with_seed(transforms.TRANSFORMS, name, opts, config.seed)
    mapper_options = with_seed(mappers.MAPPERS, mapper, mapper_options, config.seed)
    transform = transforms.create(name, spec=spec, sample_rate=rate, **opts)
    if head is not None:
        head_module = speech_head(config, backbone, len(classes), head, head_options)
        model = SpeechClassifier(backbone, head_module, program=transform)
        counts = {**component_counts(model), "budget": getattr(transform, "budget", None)}
    else:
        if mapper == "semantic":
            mapper_options.setdefault("class_names", list(classes))
        model = ReprogrammedModel(transform, backbone, mappers.create(mapper, backbone, len(classes), **mapper_options))
        counts = model.budget()
    return Built(model, rate, spec.modality, counts, label_names=tuple(spec.label_names))
