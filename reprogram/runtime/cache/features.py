"""Outputs of frozen networks, computed once per key and memory-mapped afterwards.

* :func:`cached_features`: a frozen backbone's pooled features ``(M, D)``, source logits ``(M, S)`` and,
  for speech encoders, the masked mean of every (or chosen) hidden state ``(M, L, D)``: everything a linear,
  per-layer or weighted-sum probe, a label mapper fitted on fixed logits, or a feature baseline needs.
* :func:`cached_activations`: the output of the frozen lower part of a network for each clip (e.g. the
  convolutional feature encoder before prompt tuning, or layer ``L - k`` before LoRA on the top ``k``
  layers), computed by a callable the caller provides.

Keys hold the data's identity (:meth:`WaveformDataset.cache_key_parts` or a hash of the waveforms), the
backbone's name, spec and weight fingerprint, the layer selection, the caller's ``key_parts`` (transform /
front-end config), the library versions and a fingerprint of this toolkit's code that computes the outputs
(:func:`reprogram.runtime.cache.code.code_fingerprint`: the backbone's and its submodules' class modules, this module,
the dataset's decoding and cropping, ``preprocess``/``fn``'s module).
Everything runs under ``torch.inference_mode`` in eval mode.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from reprogram.runtime.cache.code import code_fingerprint, dataset_code
from reprogram.runtime.cache.keys import array_identity, backbone_identity, versions
from reprogram.runtime.cache.store import get_or_build, load_array, read_meta

WaveSource = Dataset | np.ndarray | torch.Tensor | Sequence[np.ndarray]
_LIBS = ("torch", "transformers", "numpy")


def data_key_parts(data: WaveSource, key_parts: Mapping[str, Any]) -> dict:
    """The data part of a key: the dataset's own ``cache_key_parts()``, a hash of raw waveforms, or the caller's.

    Raises:
        ValueError: a dataset without ``cache_key_parts`` and no ``"data"`` entry in ``key_parts``.
    """
    if hasattr(data, "cache_key_parts"):
        return {"data": data.cache_key_parts()}
    if isinstance(data, (np.ndarray, torch.Tensor)) or (
        isinstance(data, Sequence) and all(isinstance(w, (np.ndarray, torch.Tensor)) for w in data)
    ):
        return {"data": {"waves": array_identity(data)}}
    if "data" in key_parts:
        return {}
    raise ValueError(
        f"cannot tell what a {type(data).__name__} holds, so its outputs cannot be cached safely. Fix: pass a "
        "WaveformDataset, an (M, N) array of waveforms, or put the data's identity under key_parts['data']"
    )


def pad_collate(batch: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    """Items ``(x (N_i, ...), ...)`` or bare ``x`` -> ``(x (B, max N_i, ...) zero-padded, lengths (B,))``."""
    xs = [torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item) for item in batch]
    lengths = torch.tensor([x.shape[0] for x in xs])
    out = xs[0].new_zeros((len(xs), int(lengths.max()), *xs[0].shape[1:]))
    for i, x in enumerate(xs):
        out[i, : x.shape[0]] = x
    return out, lengths


def _wave(item) -> torch.Tensor:
    return torch.as_tensor(item[0] if isinstance(item, (tuple, list)) else item, dtype=torch.float32)


def _batches(data: WaveSource, batch_size: int) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """``(wave (B, N), indices)`` batches of clips of EQUAL length: nothing is ever padded, so every clip's
    outputs are those of the clip alone, whatever the batch size or its batch mates (padding changes e.g. the
    last STFT frames of a speech front end). Clips of one length are batched together as they come."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, (np.ndarray, torch.Tensor)):
        waves = torch.as_tensor(np.asarray(data, dtype=np.float32) if isinstance(data, np.ndarray) else data).float()
        if waves.dim() != 2:
            raise ValueError(f"waveforms must be (M, N), got shape {tuple(waves.shape)}")
        for s in range(0, waves.shape[0], batch_size):
            yield waves[s : s + batch_size], list(range(s, min(s + batch_size, waves.shape[0])))
        return
    buckets: dict[int, list[tuple[int, torch.Tensor]]] = {}
    held = 0
    for i in range(len(data)):
        w = _wave(data[i])  # (N_i,)
        bucket = buckets.setdefault(w.shape[0], [])
        bucket.append((i, w))
        held += 1
        if len(bucket) == batch_size or held >= 4 * batch_size:  # full, or too many clips held: flush
            n = w.shape[0] if len(bucket) == batch_size else max(buckets, key=lambda k: len(buckets[k]))
            group = buckets.pop(n)
            held -= len(group)
            yield torch.stack([x for _, x in group]), [j for j, _ in group]
    for group in buckets.values():
        yield torch.stack([x for _, x in group]), [j for j, _ in group]


class _Rows:
    """Writes ``(B, ...)`` blocks at given rows of ``(M, ...)`` float32 ``.npy`` files created on the first block."""

    def __init__(self, folder: Path, m: int) -> None:
        self.folder, self.m, self.arrays, self.done = folder, m, {}, 0

    def add(self, rows: list[int], blocks: dict[str, torch.Tensor]) -> None:
        for name, t in blocks.items():
            a = t.detach().float().cpu().numpy()
            if name not in self.arrays:
                self.arrays[name] = np.lib.format.open_memmap(
                    self.folder / f"{name}.npy", mode="w+", dtype=np.float32, shape=(self.m, *a.shape[1:])
                )
            self.arrays[name][rows] = a
        self.done += len(rows)

    def close(self) -> dict:
        assert self.done == self.m, f"wrote {self.done} rows of {self.m}"
        shapes = {name: list(a.shape) for name, a in self.arrays.items()}
        for a in self.arrays.values():
            a.flush()
        self.arrays.clear()
        return shapes


@dataclass
class FeatureSet:
    """Cached outputs of a frozen backbone for M clips (memory-mapped, read-only, in data order).

    The arrays are read-only views of the cache files; ``torch.from_numpy(np.array(fs.features))`` gives a
    writable in-memory tensor (``(M, D)`` features are small: 602 clips x 384 floats = 0.9 MB).

    Attributes:
        features: ``(M, D)`` pooled features.
        logits: ``(M, S)`` source logits (classifiers), else ``None``.
        hidden: ``(M, len(layers), D)`` masked mean of the selected hidden states (speech encoders), else ``None``.
        layers: hidden-state indices stored in ``hidden`` (0 = embedding output).
        num_hidden_states: how many hidden states the backbone returns (L).
        path: the cache entry folder.
        computed: True when this call ran the backbone (False: served from the cache).
    """

    features: np.ndarray
    logits: np.ndarray | None
    hidden: np.ndarray | None
    layers: tuple[int, ...] = ()
    num_hidden_states: int = 0
    path: Path | None = None
    computed: bool = field(default=False, compare=False)

    def layer(self, index: int) -> np.ndarray:
        """``(M, D)`` pooled hidden state ``index`` (0 = embedding output; negative counts from the last)."""
        if self.hidden is None:
            raise KeyError("no hidden states were cached; call cached_features with layer='all' or an index")
        i = index + self.num_hidden_states if index < 0 else index
        if i not in self.layers:
            raise KeyError(f"hidden state {index} was not cached (cached: {list(self.layers)}); ask for it in layer=")
        return self.hidden[:, self.layers.index(i)]


def _layer_selection(layer: str | int | Sequence[int] | None, num_layers: int) -> tuple[int, ...] | str | None:
    if layer is None or layer == "all":
        return layer
    wanted = [layer] if isinstance(layer, int) else list(layer)
    if num_layers <= 0:
        raise ValueError(f"layer={layer!r} asks for hidden states but the backbone reports none (spec.num_layers=0); "
                         "use layer=None for a backbone without hidden states")
    out = []
    for i in wanted:
        j = i + num_layers if i < 0 else i
        if not 0 <= j < num_layers:
            raise ValueError(f"layer {i} is out of range for {num_layers} hidden states (0..{num_layers - 1})")
        out.append(j)
    return tuple(out)


def _load_features(folder: Path) -> FeatureSet:
    meta = read_meta(folder)
    opt = {n: load_array(folder, n) if (folder / f"{n}.npy").is_file() else None for n in ("logits", "hidden")}
    info = meta["info"]
    return FeatureSet(load_array(folder, "features"), opt["logits"], opt["hidden"], tuple(info.get("layers", ())),
                      int(info.get("num_hidden_states", 0)), folder)


def cached_features(
    backbone: torch.nn.Module,
    data: WaveSource,
    key_parts: Mapping[str, Any] | None = None,
    *,
    layer: str | int | Sequence[int] | None = "all",
    batch_size: int = 8,
    cache_dir: str | os.PathLike[str] | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> FeatureSet:
    """A frozen backbone's outputs for every clip, computed once and cached.

    Args:
        backbone: a frozen :class:`backbones.base.Backbone` (returns ``BackboneOutput``). Only clips of equal
            length share a batch, so each clip's outputs are those of the clip alone (no padding).
        data: a ``WaveformDataset`` (deterministic crop), an ``(M, N)`` array/tensor of waveforms, or another
            dataset of ``(wave, ...)`` items together with ``key_parts["data"]``.
        key_parts: everything else the outputs depend on, e.g. ``{"transform": <frozen transform config>}``;
            required when ``preprocess`` is given.
        layer: hidden states to pool and store: ``"all"``, an index, a list of indices, or ``None``.
        batch_size: clips per forward pass.
        cache_dir: the cache folder (``None``: ``$REPROGRAM_CACHE`` or ``~/.cache/gibbon-reprogram``).
        preprocess: a frozen map applied to each ``(B, N)`` batch before the backbone (e.g. a fixed program
            for image backbones); describe it in ``key_parts``.
        device: where the backbone runs.

    Returns:
        The :class:`FeatureSet` (memory-mapped arrays).
    """
    key_parts = dict(key_parts or {})
    if preprocess is not None and not key_parts:
        raise ValueError("preprocess changes the features, so the cache key must describe it: pass "
                         "key_parts={'transform': <its config>}")
    spec = getattr(backbone, "spec", None)
    selection = _layer_selection(layer, int(getattr(spec, "num_layers", 0) or 0))
    from backbones.hf_speech import masked_mean

    code = code_fingerprint(backbone, preprocess, masked_mean, cached_features, *dataset_code(data))
    parts = {**data_key_parts(data, key_parts), **key_parts, "backbone": backbone_identity(backbone),
             "layers": selection, "pooling": "masked_mean", "versions": versions(*_LIBS), "code": code}

    @torch.inference_mode()
    def build(folder: Path) -> dict:
        was_training = backbone.training
        backbone.eval()
        m = len(data)
        rows, layers, total = _Rows(folder, m), (), 0
        try:
            for wave, index in _batches(data, batch_size):
                x = preprocess(wave.to(device)) if preprocess is not None else wave.to(device)
                out = backbone(x)
                blocks = {"features": out.features}
                if out.logits is not None:
                    blocks["logits"] = out.logits
                if selection is not None and out.hidden_states is not None:
                    total = len(out.hidden_states)
                    layers = tuple(range(total)) if selection == "all" else selection
                    blocks["hidden"] = torch.stack([masked_mean(out.hidden_states[i], out.mask) for i in layers], 1)
                elif selection not in (None, "all"):
                    raise ValueError(f"{getattr(backbone, 'name', 'backbone')} returned no hidden states; "
                                     "use layer=None")
                rows.add(index, blocks)  # features (B, D), logits (B, S), hidden (B, L', D)
        finally:
            backbone.train(was_training)
        return {"shapes": rows.close(), "layers": list(layers), "num_hidden_states": total}

    result, built = get_or_build(cache_dir, "features", parts, build, _load_features)
    result.computed = built
    return result


@dataclass
class Activations:
    """Cached per-clip activations, memory-mapped.

    Uniform clips are one ``(M, *S)`` array (:attr:`values`); clips of unequal length are stored end to
    end along their first axis, ``(sum T_i, *rest)``, with ``offsets`` ``(M + 1,)``.

    Attributes:
        values: the stored array.
        offsets: ``None`` for uniform shapes, else clip ``i`` is ``values[offsets[i]:offsets[i + 1]]``.
        path: the cache entry folder.
        computed: True when this call ran ``fn``.
    """

    values: np.ndarray
    offsets: np.ndarray | None = None
    path: Path | None = None
    computed: bool = field(default=False, compare=False)

    def __len__(self) -> int:
        return self.values.shape[0] if self.offsets is None else len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        if self.offsets is None:
            return self.values[i]
        return self.values[int(self.offsets[i]) : int(self.offsets[i + 1])]


def _load_activations(folder: Path) -> Activations:
    offsets = np.array(load_array(folder, "offsets")) if (folder / "offsets.npy").is_file() else None
    return Activations(load_array(folder, "values"), offsets, folder)


def cached_activations(
    fn: Callable[[torch.Tensor], torch.Tensor],
    data: WaveSource,
    key_parts: Mapping[str, Any],
    *,
    point: str,
    backbone: torch.nn.Module | None = None,
    batch_size: int = 8,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> Activations:
    """``fn``'s output for every clip, computed once under ``torch.inference_mode`` and cached.

    Args:
        fn: the frozen lower part of a network, ``(B, N) waveforms -> (B, *S)`` (e.g.
            ``lambda w: backbone.lower(w)``). Only clips of equal length share a call (no padding), so every
            clip's activations are those of the clip alone.
        data: a ``WaveformDataset`` (deterministic crop), an ``(M, N)`` array/tensor, or a dataset with
            ``key_parts["data"]``.
        key_parts: what ``fn`` computes beyond the backbone's weights (e.g. its options).
        point: name of the cut point (``"feature_encoder"``, ``"layer_8"``); part of the key.
        backbone: the module ``fn`` reads weights from; its name, spec and weight fingerprint enter the key.
            ``None`` only when ``key_parts`` identifies the weights.
        batch_size: clips per call of ``fn`` (uniform-length data).
        cache_dir: the cache folder (``None``: default).
        device: where ``fn`` runs (outputs are stored on the CPU).
    """
    if not point:
        raise ValueError("point must name where the network is cut (e.g. 'feature_encoder'); it is part of the key")
    key_parts = dict(key_parts)
    parts = {**data_key_parts(data, key_parts), **key_parts, "point": point,
             "backbone": None if backbone is None else backbone_identity(backbone), "versions": versions(*_LIBS),
             "code": code_fingerprint(fn, backbone, cached_activations, *dataset_code(data))}

    @torch.inference_mode()
    def build(folder: Path) -> dict:
        was_training = None if backbone is None else backbone.training
        if backbone is not None:
            backbone.eval()
        raw, order, shapes = folder / "values.raw", [], []
        try:
            with open(raw, "wb") as f:
                for wave, index in _batches(data, batch_size):
                    a = np.ascontiguousarray(fn(wave.to(device)).detach().float().cpu().numpy())  # (B, *S)
                    order.extend(index)
                    shapes.extend([a.shape[1:]] * a.shape[0])
                    f.write(a.tobytes())
        finally:
            if backbone is not None:
                backbone.train(was_training)
        return _finish_activations(folder, raw, order, shapes)

    result, built = get_or_build(cache_dir, "activations", parts, build, _load_activations)
    result.computed = built
    return result


def _finish_activations(folder: Path, raw: Path, order: list[int], shapes: list[tuple[int, ...]]) -> dict:
    """Reorder the raw per-clip blocks (processing order) into data order: ``values.npy`` (uniform: ``(M, *S)``;
    ragged: ``(sum T_i, *rest)`` plus ``offsets.npy``)."""
    if not shapes:
        raise ValueError("no clips to compute activations for")
    uniform = all(s == shapes[0] for s in shapes)
    if not uniform and any(len(s) == 0 or s[1:] != shapes[0][1:] for s in shapes):
        raise ValueError(f"activations differ in more than their first axis ({shapes[0]} vs others); fn must "
                         "return (B, T, ...) with the same trailing shape for every clip")
    sizes = np.array([int(np.prod(s)) for s in shapes], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])  # element offsets in the raw file (processing order)
    where = {clip: k for k, clip in enumerate(order)}
    by_clip = [where[i] for i in range(len(order))]
    if uniform:
        shape = (len(shapes), *shapes[0])
    else:
        lengths = np.array([shapes[k][0] for k in by_clip], dtype=np.int64)
        np.save(folder / "offsets.npy", np.concatenate([[0], np.cumsum(lengths)]))
        shape = (int(lengths.sum()), *shapes[0][1:])
    src = np.memmap(raw, dtype=np.float32, mode="r") if starts[-1] else np.zeros(0, np.float32)
    out = np.lib.format.open_memmap(folder / "values.npy", mode="w+", dtype=np.float32, shape=shape)
    flat, pos = out.reshape(-1), 0
    for k in by_clip:
        flat[pos : pos + sizes[k]] = src[starts[k] : starts[k + 1]]
        pos += sizes[k]
    out.flush()
    del src, out, flat
    raw.unlink()
    return {"shape": list(shape), "uniform": uniform}


class ArrayDataset(Dataset):
    """Cached arrays as training items ``(x (float32 tensor), target, index)``, like ``WaveformDataset``'s.

    Args:
        arrays: an ``(M, ...)`` array or any sequence of per-clip arrays (e.g. :class:`Activations`).
        targets: ``(M,)`` integer classes.
    """

    def __init__(self, arrays: np.ndarray | Sequence[np.ndarray], targets: Sequence[int]) -> None:
        if len(arrays) != len(targets):
            raise ValueError(f"{len(arrays)} arrays but {len(targets)} targets; pass the targets of the same clips")
        self.arrays, self.targets = arrays, [int(t) for t in targets]
        self.in_memory = True

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return torch.from_numpy(np.array(self.arrays[index], dtype=np.float32)), self.targets[index], index
