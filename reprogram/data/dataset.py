"""Clip tables as torch datasets of fixed-length waveforms at the backbone's sample rate."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from reprogram.data.audio import audio_info, load_audio
from reprogram.data.records import CacheKey, ClipTable, cache_key
from reprogram.data.windows import CROP_POLICIES, clip_bounds, fit_length


class WaveformDataset(Dataset):
    """Labelled waveforms of a clip table, each decoded and resampled once, then kept in memory.

    Items are ``(wave, target, index)``: ``wave`` a float32 tensor of shape ``(N,)`` with
    ``N = round(clip_seconds * sample_rate)`` (or the clip's own length when ``clip_seconds`` is ``None``),
    ``target`` the class index in :attr:`classes`, ``index`` the row in the table. Crops are redrawn on
    every call under ``crop="random"`` from a generator seeded by ``(seed, epoch, index)``, so they are
    reproducible and identical whatever the number of DataLoader workers; call :meth:`set_epoch` each epoch.

    Args:
        table: the clips (every record needs a label).
        sample_rate: the rate the waveforms are resampled to (the backbone's ``InputSpec.sample_rate``).
        clip_seconds: fixed length in seconds; ``None`` keeps every clip's length (batch with :func:`collate`).
        crop: ``"center"`` (evaluation), ``"random"`` (training) or ``"start"``; also places short clips in
            the zero padding.
        classes: class names in target order (default: ``table.classes``); pass the training table's
            classes to validation and test datasets.
        seed: seed of the random crops.
        cache: a mapping shared between datasets (keys :func:`cache_key`); default: a private dict.
            DataLoader workers each fill their own copy; call :meth:`preload` before creating the loader
            to decode once in the main process (forked workers then share the arrays copy-on-write).
        cache_dir: a folder for the disk cache of decoded clips (:func:`reprogram.runtime.cache.cached_waveforms`):
            on first use every clip of the table is decoded once (clips already in ``cache`` are reused) into
            one memory-mapped float32 file keyed by the files' identity, the segments and the rate; later
            datasets, runs and worker processes map it instead of decoding. ``None``: memory only.
        cache_identity: how the disk cache identifies files: ``"stat"`` (path, size, mtime_ns) or
            ``"content"`` (sha256 of the bytes).
    """

    def __init__(
        self,
        table: ClipTable,
        sample_rate: int,
        clip_seconds: float | None,
        crop: str = "center",
        classes: Sequence[str] | None = None,
        seed: int = 0,
        cache: MutableMapping[CacheKey, np.ndarray] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_identity: str = "stat",
    ) -> None:
        if crop not in CROP_POLICIES:
            raise ValueError(f"crop={crop!r} unknown; use one of {CROP_POLICIES}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if clip_seconds is not None and clip_seconds <= 0:
            raise ValueError(f"clip_seconds must be positive or None, got {clip_seconds}")
        unlabelled = [r.source for r in table if r.label is None]
        if unlabelled:
            raise ValueError(f"{len(unlabelled)} clips have no label (first: {unlabelled[0]}). Fix: load the table "
                             "with its label column, or drop unlabelled rows.")
        self.table = table
        self.sample_rate = int(sample_rate)
        self.clip_seconds = clip_seconds
        self.num_samples = None if clip_seconds is None else int(round(clip_seconds * sample_rate))
        self.crop = crop
        self.classes = list(classes) if classes is not None else table.classes
        self.targets = table.targets(self.classes)
        self.seed = seed
        self.epoch = 0
        self.cache: MutableMapping[CacheKey, np.ndarray] = {} if cache is None else cache
        self.cache_dir = cache_dir
        self.cache_identity = cache_identity
        self._packed: Mapping[CacheKey, np.ndarray] | None = None  # the disk cache, mapped on first use

    def __len__(self) -> int:
        return len(self.table)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops are drawn."""
        self.epoch = int(epoch)

    def waveform(self, index: int) -> np.ndarray:
        """The whole decoded clip at the dataset's rate, shape ``(M,)`` (decoded on first use, then cached)."""
        rec = self.table[index]
        key = cache_key(rec, self.sample_rate)
        if self.cache_dir is not None:
            if self._packed is None:
                from reprogram.runtime.cache.waveforms import cached_waveforms

                self._packed = cached_waveforms(self.table, self.sample_rate, self.cache_dir,
                                                self.cache_identity, decoded=self.cache)
            return self._packed[key]
        wave = self.cache.get(key)
        if wave is None:
            wave, _ = load_audio(rec.path, self.sample_rate, rec.start_s, rec.end_s)
            self.cache[key] = wave
        return wave

    def preload(self) -> None:
        """Decode every clip now (e.g. before timing a training run, or before forking DataLoader workers)."""
        if self.cache_dir is not None:
            if len(self):
                self.waveform(0)  # maps (or builds) the whole table's disk cache
            return
        for i in range(len(self)):
            self.waveform(i)

    @property
    def in_memory(self) -> bool:
        """True when every clip is served from memory or the mapped disk cache, i.e. nothing is left to decode."""
        if self._packed is not None:
            return True
        return all(cache_key(rec, self.sample_rate) in self.cache for rec in self.table)

    def cache_key_parts(self) -> dict:
        """What this dataset's items depend on, for keys of caches built from it (features, activations).

        Raises:
            ValueError: under ``crop="random"``, whose items change every epoch and must not be cached.
        """
        if self.crop == "random" and self.num_samples is not None:
            raise ValueError("a crop='random' dataset draws new crops every epoch, so its outputs cannot be cached; "
                             "cache features of a crop='center' (or 'start') dataset of the same table")
        from reprogram.runtime.cache.keys import table_identity

        return {"table": table_identity(self.table, self.cache_identity), "sample_rate": self.sample_rate,
                "clip_seconds": self.clip_seconds, "crop": self.crop}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        wave = self.waveform(index)  # (M,)
        if self.num_samples is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index]) if self.crop == "random" else None
            wave = fit_length(wave, self.num_samples, self.crop, rng)  # (N,)
        return torch.from_numpy(np.array(wave, dtype=np.float32)), self.targets[index], index

    def padding_fractions(self) -> list[float]:
        """Fraction of each item that is zero padding (0 when the clip fills ``clip_seconds``); decodes clips."""
        if self.num_samples is None:
            return [0.0] * len(self)
        return [max(0.0, 1.0 - self.waveform(i).shape[0] / self.num_samples) for i in range(len(self))]


def clip_durations(table: ClipTable) -> list[float]:
    """Duration in seconds of every clip, from segment bounds or the file header (no decoding)."""
    cache: dict[str, float] = {}

    def duration_of(path: str) -> float:
        if path not in cache:
            cache[path] = audio_info(path).duration
        return cache[path]

    out = []
    for rec in table:
        start, end = clip_bounds(rec, duration_of)
        if rec.end_s is not None and rec.path in cache:
            end = min(end, cache[rec.path])
        out.append(max(0.0, end - start))
    return out


def padding_fractions(table: ClipTable, clip_seconds: float) -> list[float]:
    """Fraction of a ``clip_seconds`` window each clip would leave as padding (from headers, no decoding)."""
    if clip_seconds <= 0:
        raise ValueError(f"clip_seconds must be positive, got {clip_seconds}")
    return [max(0.0, 1.0 - d / clip_seconds) for d in clip_durations(table)]


def collate(batch: Sequence[tuple[torch.Tensor, int, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack items of different lengths, zero-padding at the end.

    Args:
        batch: items ``(wave (N_i,), target, index)``.

    Returns:
        ``(waves (B, max N_i), targets (B,), indices (B,))``.
    """
    n = max(w.shape[0] for w, _, _ in batch)
    waves = torch.zeros(len(batch), n)
    for b, (w, _, _) in enumerate(batch):
        waves[b, : w.shape[0]] = w
    targets = torch.tensor([t for _, t, _ in batch], dtype=torch.long)
    indices = torch.tensor([i for _, _, i in batch], dtype=torch.long)
    return waves, targets, indices
