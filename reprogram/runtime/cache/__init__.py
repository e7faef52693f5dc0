"""Caches of everything frozen: decoded waveforms, backbone features, activations below a trained part.

Entries are content-addressed (a key changes whenever any input of the result does: the audio files, the
segments, the transform config, the backbone's weights, the layer, the library versions), written
atomically and read memory-mapped. See :mod:`reprogram.runtime.cache.store` for the layout and
``reprogram cache info|clear`` for the command line.

Names are imported on first use, so ``reprogram cache info`` starts without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Activations": "features",
    "ArrayDataset": "features",
    "FeatureSet": "features",
    "cached_activations": "features",
    "cached_features": "features",
    "code_fingerprint": "code",
    "pad_collate": "features",
    "backbone_fingerprint": "keys",
    "backbone_identity": "keys",
    "file_identity": "keys",
    "table_identity": "keys",
    "KINDS": "store",
    "cache_root": "store",
    "cache_size_report": "store",
    "clear": "store",
    "digest": "store",
    "get_or_build": "store",
    "PackedWaveforms": "waveforms",
    "cached_waveforms": "waveforms",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'reprogram.runtime.cache' has no attribute {name!r}")
    return getattr(importlib.import_module(f"reprogram.runtime.cache.{_WHERE[name]}"), name)
