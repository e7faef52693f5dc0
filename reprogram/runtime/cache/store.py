"""Content-addressed cache entries: one folder per key, written atomically, arrays read memory-mapped.

Layout::

    <root>/<kind>/<key>/            key = sha256 of the canonical JSON of the key's parts (32 hex digits)
        <name>.npy ...              the arrays (np.load(..., mmap_mode="r"))
        meta.json                   the key's parts and the arrays' shapes, for humans

An entry is built in a temporary sibling folder (``.tmp-<key>-*``) and renamed into place with
:func:`os.replace`, so readers see a whole entry or none; two processes building the same key both succeed
and one of the two identical results is kept. The root is the folder passed explicitly, else
``$REPROGRAM_CACHE``, else ``~/.cache/gibbon-reprogram``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

#: Bumped when the layout or the meaning of stored arrays changes; part of every key.
CACHE_FORMAT = 1
#: Kinds written by :mod:`reprogram.runtime.cache` plus the synthetic corpora of :mod:`reprogram.data.synth.cache`.
KINDS: tuple[str, ...] = ("waveforms", "features", "activations", "synthetic")
META = "meta.json"
TMP_PREFIX = ".tmp-"

T = TypeVar("T")


def cache_root(folder: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``folder`` if given, else ``$REPROGRAM_CACHE``, else ``~/.cache/gibbon-reprogram``."""
    if folder is not None:
        return Path(folder).expanduser()
    env = os.environ.get("REPROGRAM_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gibbon-reprogram"


def _jsonable(obj: Any, where: str) -> Any:
    """Canonical JSON-able form of a key part (dicts sorted by key, tuples as lists, paths as strings)."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return repr(obj)
        return obj
    if isinstance(obj, np.generic):
        return _jsonable(obj.item(), where)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__class__": type(obj).__qualname__, **_jsonable(dataclasses.asdict(obj), where)}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        return sorted(_jsonable(v, where) for v in obj)
    raise TypeError(
        f"cache key part {where} is a {type(obj).__name__}, which has no stable identity; pass it as "
        "str/number/bool/None, a list or dict of those, or a dataclass (e.g. the transform's config)"
    )


def canonical(parts: Mapping[str, Any]) -> dict:
    """The canonical JSON-able form of a key's parts (raises TypeError naming a part without a stable form)."""
    return _jsonable(dict(parts), "key")


def digest(parts: Any) -> str:
    """32-hex-digit sha256 of the canonical JSON of ``parts``."""
    text = json.dumps(_jsonable(parts, "key"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def entry_dir(root: str | os.PathLike[str] | None, kind: str, key: str) -> Path:
    """Folder of entry ``key`` of ``kind`` under ``root``."""
    if kind not in KINDS:
        raise ValueError(f"cache kind {kind!r} unknown; use one of {KINDS}")
    return cache_root(root) / kind / key


def _write_meta(folder: Path, meta: dict) -> None:
    with open(folder / META, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())


def get_or_build(
    root: str | os.PathLike[str] | None,
    kind: str,
    parts: Mapping[str, Any],
    build: Callable[[Path], dict | None],
    load: Callable[[Path], T],
) -> tuple[T, bool]:
    """Load the entry of ``parts``, building it first when it is absent or unreadable.

    Args:
        root: cache folder (``None``: :func:`cache_root` default).
        kind: one of :data:`KINDS`.
        parts: everything the stored data depends on; the key is their digest plus :data:`CACHE_FORMAT`.
        build: writes the entry's files into the (temporary) folder it is given; returns extra facts for
            the sidecar (shapes, timings) or ``None``.
        load: reads a finished entry folder.

    Returns:
        ``(load(entry), built)``: ``built`` is True when this call computed the entry.
    """
    full = {"format": CACHE_FORMAT, "kind": kind, **canonical(parts)}
    key = digest(full)
    final = entry_dir(root, kind, key)
    if (final / META).is_file():
        try:
            return load(final), False
        except (OSError, ValueError, KeyError, EOFError):
            shutil.rmtree(final, ignore_errors=True)  # damaged by hand or by a full disk: rebuild it
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{key}-", dir=final.parent))
    try:
        t0 = time.perf_counter()
        info = build(tmp) or {}
        files = {p.name: p.stat().st_size for p in tmp.iterdir()}
        meta = {"key": key, "parts": full, "info": info, "files": files,
                "build_seconds": round(time.perf_counter() - t0, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                           time.gmtime())}
        _write_meta(tmp, meta)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / META).is_file():  # not a concurrent writer finishing first: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load(final), True


def read_meta(folder: str | os.PathLike[str]) -> dict:
    """The sidecar of an entry folder."""
    with open(Path(folder) / META) as f:
        return json.load(f)


def load_array(folder: Path, name: str) -> np.ndarray:
    """Array ``name`` of an entry, memory-mapped read-only."""
    return np.load(folder / f"{name}.npy", mmap_mode="r")


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _is_entry(kind: str, path: Path) -> bool:
    if kind == "synthetic":  # corpora of reprogram.data.synth.cache: complete once manifest.csv exists
        return (path / "manifest.csv").is_file()
    return (path / META).is_file()


def cache_size_report(folder: str | os.PathLike[str] | None = None) -> dict:
    """Entries and bytes per kind of the cache folder.

    Args:
        folder: the cache folder (``None``: :func:`cache_root` default).

    Returns:
        ``{"root": str, "total_bytes": int, "kinds": {kind: {"entries", "bytes", "incomplete",
        "incomplete_bytes"}}}``: ``incomplete`` counts temporary folders of interrupted writers.
    """
    root = cache_root(folder)
    kinds: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        row = {"entries": 0, "bytes": 0, "incomplete": 0, "incomplete_bytes": 0}
        base = root / kind
        if base.is_dir():
            for child in base.iterdir():
                if not child.is_dir():
                    continue
                size = _tree_bytes(child)
                if _is_entry(kind, child):
                    row["entries"] += 1
                    row["bytes"] += size
                else:
                    row["incomplete"] += 1
                    row["incomplete_bytes"] += size
        kinds[kind] = row
    total = sum(r["bytes"] + r["incomplete_bytes"] for r in kinds.values())
    return {"root": str(root), "total_bytes": total, "kinds": kinds}


def clear(folder: str | os.PathLike[str] | None = None, kind: str | None = None) -> dict[str, int]:
    """Delete every entry of ``kind`` (all kinds when ``None``); files outside the kinds' folders are kept.

    Args:
        folder: the cache folder (``None``: :func:`cache_root` default).
        kind: one of :data:`KINDS`, or ``None`` for all.

    Returns:
        Bytes freed per kind.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"cache kind {kind!r} unknown; use one of {KINDS} (or no kind to clear them all)")
    root = cache_root(folder)
    freed = {}
    for k in KINDS if kind is None else (kind,):
        base = root / k
        freed[k] = 0
        if not base.is_dir():
            continue
        for child in base.iterdir():
            freed[k] += _tree_bytes(child)
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    return freed
