"""Train above a frozen prefix: the activations below the trained point are computed once and cached.

A method that trains only above a point of a frozen speech encoder recomputes, in every step of every epoch,
the same frozen work below it. Here that work is done once per (data, crop, weights of the lower part, cut)
by :func:`reprogram.runtime.cache.cached_activations` / :func:`reprogram.runtime.cache.cached_features` (on disk,
shared by
every run, seed and fold; in memory with ``--no-cache``) and the one training loop trains and evaluates the
upper part plus head on the cached items. The modules are the method's own (same objects, same parameter
names), so the trained state, checkpoints and ``trainable.safetensors`` are those of the uncached run.

==================  ==========================================================================================
kind                when / what is cached
==================  ==========================================================================================
``split``           PEFT with ``Built.cut = k`` (prompt / deep_prompt: 0; LoRA / DoRA / IA3 on layers >= k):
                    the input of layer k, ``(M, T, D)`` (:mod:`backbones.split`); the head must read states >= k
``pooled``          frozen backbone + weighted-sum head (``weighted_probe``): every hidden state mean-pooled,
                    ``(M, L + 1, D)``; exact because the masked mean and the weighted sum commute
``frames``          frozen backbone + a head on one hidden state (``attentive_probe``): that state's frames
==================  ==========================================================================================

The cached path is taken ONLY when it measures what the uncached path measures: the training crop must be
deterministic (every clip exactly the window, or no window), and the run must not use torchrun or the
``training`` accel options (they act on the full backbone). Otherwise the run falls back to the uncached path,
logs why and records it in ``result.json`` (``prefix_cache``); metrics never depend on the choice (tested).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from reprogram.runtime.cache.features import ArrayDataset

log = logging.getLogger(__name__)


class UpperClassifier(nn.Module):
    """``upper`` of a split backbone plus the head: ``(B, T, D)`` input of layer ``cut`` -> ``(B, K)``.

    Holds the method's own ``backbone`` and ``head`` (parameter names as in ``SpeechClassifier``).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, split) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self._split = split

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(self._split.upper(hidden, None))


class FrameClassifier(nn.Module):
    """A head on cached frames ``(B, T, D)`` of hidden state ``index`` (the others are not computed: None)."""

    def __init__(self, head: nn.Module, index: int, num_states: int) -> None:
        super().__init__()
        self.head, self.index, self.num_states = head, index, num_states

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        states = [None] * self.num_states
        states[self.index] = frames
        return self.head(states, None)


class PooledClassifier(nn.Module):
    """A weighted-sum head on cached per-layer pooled features: ``(B, L, D) -> (B, K)`` (``forward_pooled``)."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head.forward_pooled(pooled)


class _HiddenState:
    """``wave (B, N) -> hidden_states[index] (B, T, D)`` of a frozen backbone (the cached function)."""

    def __init__(self, backbone: nn.Module, index: int) -> None:
        self.backbone, self.index = backbone, index

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        return self.backbone(wave).hidden_states[self.index]


class _Rows(Sequence):
    """Rows ``index`` of per-clip arrays (e.g. :class:`~reprogram.runtime.cache.features.Activations`)."""

    def __init__(self, arrays, index: Sequence[int]) -> None:
        self.arrays, self.index = arrays, list(index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.arrays[self.index[i]]


class CachedItems(ArrayDataset):
    """Cached items ``(x, target, index)`` of the clips of ``table`` (the table names the clips in results)."""

    def __init__(self, arrays, targets: Sequence[int], table) -> None:
        super().__init__(arrays, targets)
        self.table = table


@dataclass
class Prefixed:
    """The cached-prefix version of a method's training (or why there is none).

    Attributes:
        model: what the training loop trains (shares modules with ``Built.model``), or None (uncached path).
        train: cached training items; evals: cached evaluation items per part.
        record: ``result.json``'s ``prefix_cache``: ``used``, ``kind``, ``point``, ``hit`` per source, or ``reason``.
    """

    model: nn.Module | None
    train: Dataset | None = None
    evals: dict[str, Dataset] = field(default_factory=dict)
    record: dict = field(default_factory=dict)


def head_reads(head: nn.Module, num_states: int) -> list[int]:
    """Hidden-state indices ``head`` reads: every one (weighted sum) or its ``layer``."""
    if hasattr(head, "layer_logits"):
        return list(range(num_states))
    return [int(getattr(head, "layer", -1)) % num_states]


def deterministic_crop(dataset) -> bool:
    """True when a training dataset's items are the same every epoch: no window, or every clip exactly fills it."""
    n = getattr(dataset, "num_samples", None)
    return n is None or all(dataset.waveform(i).shape[0] == n for i in range(len(dataset)))


class NotApplicable(str):
    """A reason why a method has no frozen prefix at all (not a fallback: nothing to log as a warning)."""


def plan(built, train_set, accel: bool, distributed: bool) -> tuple[str, int] | str:
    """``(kind, cut)`` of the cached path for ``built``, or the reason there is none (a :class:`NotApplicable`
    when the method has no frozen prefix, a plain ``str`` when the run falls back from one)."""
    from backbones.hf_speech import SpeechBackbone
    from reprogram.mappers.heads import SpeechClassifier

    model = built.model
    if not isinstance(model, SpeechClassifier) or model.program is not None \
            or not isinstance(model.backbone, SpeechBackbone):
        return NotApplicable("the method trains from the waveform (nothing frozen below its trained part)")
    backbone, head = model.backbone, model.head
    frozen = not any(p.requires_grad for p in backbone.parameters())
    num_states = backbone.num_layers + 1
    reads = head_reads(head, num_states)
    if frozen:
        kind, cut = ("pooled", backbone.num_layers) if len(reads) > 1 else ("frames", reads[0])
    elif built.cut is None:
        return NotApplicable("the method trains the backbone from its first layer (no frozen cut)")
    else:
        kind, cut = "split", int(built.cut)
        if min(reads) < cut:
            return (f"the {type(head).__name__} reads hidden state {min(reads)}, below the cut at layer {cut}; "
                    "use a head on the last layer (head=linear) to cache the layers below the cut")
    if distributed:
        return "torchrun: each rank trains from the waveform"
    if accel:
        return "training.compile/autocast/checkpointing/channels_last act on the full backbone"
    if not deterministic_crop(train_set):
        return ("training crops are random (clips longer or shorter than data.clip_seconds differ per epoch); "
                "set data.clip_seconds to the clip length (or null) to cache the frozen part")
    return kind, cut


def prepare_prefix(built, train_set, full, rows: dict[str, list[int]], external, cache_dir: Path | None,
                   accel: bool = False, distributed: bool = False, batch_size: int = 8) -> Prefixed:
    """The cached-prefix training of ``built``, or a :class:`Prefixed` with ``model=None`` and the reason.

    Args:
        built: the built method (``Built.model`` a ``SpeechClassifier``; ``Built.cut`` for PEFT methods).
        train_set: the training dataset of the uncached path (its crop decides).
        full: center-crop ``WaveformDataset`` of the whole table; ``rows``: part -> row indices of it.
        external: center-crop dataset of an external test set, or None.
        cache_dir: the cache folder, or None (computed in memory for this run only).
        accel: any ``training`` accel option is on; distributed: under torchrun.
        batch_size: clips per frozen forward pass.
    """
    decision = plan(built, train_set, accel, distributed)
    if isinstance(decision, str):
        (log.info if isinstance(decision, NotApplicable) else log.warning)("prefix cache not used: %s", decision)
        return Prefixed(None, record={"used": False, "reason": decision})
    kind, cut = decision
    model = built.model
    sources = {"data": full, **({"external": external} if external is not None else {})}
    with tempfile.TemporaryDirectory(prefix="reprogram-prefix-") as scratch:
        folder = cache_dir if cache_dir is not None else Path(scratch)
        computed = {name: _compute(kind, cut, model, ds, folder, batch_size) for name, ds in sources.items()}
        if cache_dir is None:  # in memory for this run only; the scratch folder goes
            computed = {name: (_in_memory(a), point, hit) for name, (a, point, hit) in computed.items()}
    arrays = {name: a for name, (a, _, _) in computed.items()}
    point = computed["data"][1]
    targets = np.asarray(full.targets)
    evals = {part: CachedItems(_Rows(arrays["data"], idx), targets[idx], full.table.subset(idx))
             for part, idx in rows.items()}
    if external is not None:
        evals["external"] = CachedItems(arrays["external"], external.targets, external.table)
    if kind == "split":
        from backbones.split import split_backbone

        trainer = UpperClassifier(model.backbone, model.head, split_backbone(model.backbone, cut))
    elif kind == "frames":
        trainer = FrameClassifier(model.head, cut, model.backbone.num_layers + 1)
    else:
        trainer = PooledClassifier(model.head)
    hits = {name: (None if cache_dir is None else not c[2]) for name, c in computed.items()}
    record = {"used": True, "kind": kind, "point": point, "cut": cut, "hit": hits,
              "store": "disk" if cache_dir is not None else "memory"}
    log.info("prefix cache: %s at %s (hit: %s)", kind, point, hits)
    return Prefixed(trainer, evals["train"], evals, record)


def _in_memory(arrays):
    """A memory copy of cached arrays (an ``np.ndarray`` or ragged :class:`Activations`)."""
    from reprogram.runtime.cache.features import Activations

    if isinstance(arrays, Activations):
        offsets = None if arrays.offsets is None else np.array(arrays.offsets)
        return Activations(np.array(arrays.values), offsets)
    return np.array(arrays)


def _compute(kind: str, cut: int, model, dataset, folder: Path, batch_size: int):
    """``(arrays, point, computed)``: the frozen part's outputs for every clip of ``dataset``."""
    from reprogram.runtime.cache import cached_activations, cached_features

    backbone = model.backbone
    if kind == "pooled":
        fs = cached_features(backbone, dataset, layer="all", batch_size=batch_size, cache_dir=folder)
        return fs.hidden, "pooled_hidden_states", fs.computed  # (M, L + 1, D)
    if kind == "frames":
        acts = cached_activations(_HiddenState(backbone, cut), dataset, {}, point=f"hidden_state_{cut}",
                                  backbone=backbone, batch_size=batch_size, cache_dir=folder)
        return acts, f"hidden_state_{cut}", acts.computed
    from backbones.split import split_backbone
    from reprogram.runtime.cache.code import code_fingerprint
    from reprogram.runtime.cache.keys import backbone_fingerprint
    from reprogram.runtime.cache.store import digest

    split = split_backbone(backbone, cut)
    lower = split.lower_modules()
    # the key names the weights (parameters and buffers, e.g. mel filters) of the lower part only: adapters /
    # prompts above the cut (random per seed) change nothing below it, so every seed shares the entry
    identity = {"name": backbone.name, "class": f"{type(backbone).__module__}.{type(backbone).__qualname__}",
                "spec": digest(backbone.spec), "do_normalize": getattr(backbone, "do_normalize", None),
                "weights": backbone_fingerprint(lower), "cut": cut,
                "code": code_fingerprint(type(backbone), lower, split)}
    acts = cached_activations(split.lower_hidden, dataset, {"lower": identity}, point=split.point,
                              batch_size=batch_size, cache_dir=folder)
    return acts, split.point, acts.computed
