"""Decoded, resampled clips of a table on disk: one float32 array plus offsets, memory-mapped.

``cached_waveforms(table, rate)`` decodes every clip once (or reuses the clips a dict already holds) and
stores them as ``waves.npy`` (all clips end to end, ``(T,)`` float32) and ``offsets.npy`` (``(M + 1,)``
int64). Later runs, other processes and DataLoader workers map the same file: the operating system's page
cache holds one copy however many readers there are, and nothing is decoded again. The entry's key is the
table's audio identity (every file's path, size and mtime, or content hash, and every segment's bounds),
the sample rate, the decoder/resampler versions and a fingerprint of the decoding code
(``reprogram/data/audio.py``, this module); labels do not enter, so tasks sharing a manifest share
the entry.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path

import numpy as np

from reprogram.data.audio import load_audio
from reprogram.data.records import CacheKey, ClipTable, cache_key
from reprogram.runtime.cache.code import WAVEFORM_MODULES, code_fingerprint
from reprogram.runtime.cache.keys import table_identity, versions
from reprogram.runtime.cache.store import get_or_build, load_array

#: samples copied per step when packing (bounded memory whatever the corpus size)
_COPY_BLOCK = 1 << 22


class PackedWaveforms(MutableMapping):
    """The decoded clips of one table at one rate, memory-mapped; a drop-in ``cache`` for ``WaveformDataset``.

    Reading ``packed[key]`` (``key`` from :func:`reprogram.data.dataset.cache_key`) returns a read-only
    ``(N_i,)`` float32 view into the mapped file (no copy). Clips outside the table can still be stored
    (``packed[key] = wave``); they live in a small in-memory overlay. Pickling (spawned DataLoader workers)
    carries the file's path, not the samples; the copy maps the file again.

    Args:
        folder: the entry folder holding ``waves.npy`` and ``offsets.npy``.
        keys: the stored clips' keys, in storage order.
    """

    def __init__(self, folder: str | os.PathLike[str], keys: list[CacheKey]) -> None:
        self.folder = Path(folder)
        self.keys_in_order = list(keys)
        self.index = {k: i for i, k in enumerate(self.keys_in_order)}
        self.overlay: dict[CacheKey, np.ndarray] = {}
        self._waves: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._open()

    def _open(self) -> None:
        self._waves = load_array(self.folder, "waves")  # (T,) float32, memory-mapped
        self._offsets = np.array(load_array(self.folder, "offsets"))  # (M + 1,) int64, small: in memory
        if self._offsets.shape != (len(self.keys_in_order) + 1,) or int(self._offsets[-1]) != self._waves.shape[0]:
            raise ValueError(f"waveform cache entry {self.folder} does not match its table; it will be rebuilt")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_waves"] = state["_offsets"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def clip(self, i: int) -> np.ndarray:
        """Stored clip ``i`` (storage order), ``(N_i,)`` float32 read-only view."""
        return self._waves[int(self._offsets[i]) : int(self._offsets[i + 1])]

    def __getitem__(self, key: CacheKey) -> np.ndarray:
        i = self.index.get(key)
        if i is None:
            return self.overlay[key]
        return self.clip(i)

    def __setitem__(self, key: CacheKey, wave: np.ndarray) -> None:
        if key not in self.index:
            self.overlay[key] = wave

    def __delitem__(self, key: CacheKey) -> None:
        del self.overlay[key]

    def __iter__(self) -> Iterator[CacheKey]:
        yield from self.keys_in_order
        yield from self.overlay

    def __len__(self) -> int:
        return len(self.keys_in_order) + len(self.overlay)

    def __contains__(self, key: object) -> bool:
        return key in self.index or key in self.overlay

    @property
    def nbytes(self) -> int:
        """Bytes of the mapped samples."""
        return int(self._waves.nbytes)


def _pack(folder: Path, table: ClipTable, keys: list[CacheKey], rows: list[int], sample_rate: int,
          decoded: Mapping[CacheKey, np.ndarray] | None) -> dict:
    """Decode (or take from ``decoded``) each clip, append it to a raw file, then copy it into ``waves.npy``."""
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    raw = folder / "waves.raw"
    with open(raw, "wb") as f:
        for j, (key, row) in enumerate(zip(keys, rows, strict=True)):
            wave = decoded.get(key) if decoded is not None else None
            if wave is None:
                rec = table[row]
                wave, _ = load_audio(rec.path, sample_rate, rec.start_s, rec.end_s)  # (N_j,)
            f.write(np.ascontiguousarray(wave, dtype=np.float32).tobytes())
            offsets[j + 1] = offsets[j] + len(wave)
    total = int(offsets[-1])
    out = np.lib.format.open_memmap(folder / "waves.npy", mode="w+", dtype=np.float32, shape=(total,))
    if total:
        src = np.memmap(raw, dtype=np.float32, mode="r", shape=(total,))
        for start in range(0, total, _COPY_BLOCK):
            out[start : start + _COPY_BLOCK] = src[start : start + _COPY_BLOCK]
        del src
    out.flush()
    del out
    raw.unlink()
    np.save(folder / "offsets.npy", offsets)
    return {"clips": len(keys), "samples": total, "sample_rate": sample_rate, "seconds": total / sample_rate}


def cached_waveforms(
    table: ClipTable,
    sample_rate: int,
    cache_dir: str | os.PathLike[str] | None = None,
    identity: str = "stat",
    decoded: Mapping[CacheKey, np.ndarray] | None = None,
) -> PackedWaveforms:
    """Every clip of ``table`` decoded and resampled to ``sample_rate``, from the disk cache (built if absent).

    Args:
        table: the clips (duplicate rows are stored once).
        sample_rate: the rate to resample to (Hz).
        cache_dir: the cache folder (``None``: ``$REPROGRAM_CACHE`` or ``~/.cache/gibbon-reprogram``).
        identity: how files are identified in the key: ``"stat"`` (path, size, mtime_ns) or ``"content"``
            (path, size, sha256 of the bytes).
        decoded: clips already decoded in memory (keys :func:`cache_key`), used instead of decoding again.

    Returns:
        The memory-mapped clips, a mapping keyed by :func:`reprogram.data.dataset.cache_key`.

    Raises:
        FileNotFoundError / AudioReadError: a file of the table is missing or undecodable.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    first: dict[CacheKey, int] = {}
    for row, rec in enumerate(table):
        first.setdefault(cache_key(rec, sample_rate), row)
    keys, rows = list(first), list(first.values())
    parts = {
        "data": table_identity(table, identity),
        "sample_rate": int(sample_rate),
        "decoder": versions("soundfile", "torchaudio", "torch", "numpy"),
        "code": code_fingerprint(*WAVEFORM_MODULES),
    }
    packed, _ = get_or_build(
        cache_dir,
        "waveforms",
        parts,
        build=lambda folder: _pack(folder, table, keys, rows, int(sample_rate), decoded),
        load=lambda folder: PackedWaveforms(folder, keys),
    )
    return packed
