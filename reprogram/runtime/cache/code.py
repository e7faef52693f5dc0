"""Fingerprints of this toolkit's own code, so cache entries go stale when the code computing them changes.

Weights, options and library versions are in every key already; a fix to a backbone's forward pass (e.g.
Whisper or HuBERT padding), to the MFCC statistics or to the audio decoder changes results without
touching any of them. :func:`code_fingerprint` hashes the source bytes of the modules of this toolkit
(packages :data:`OWN_PACKAGES`) that define the given objects, and the cache keys include it.

Each module's source is read once per process: the fingerprint describes the code the process imported
(and runs), not a file edited on disk while it runs.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
import types
from pathlib import Path
from typing import Any

#: Top-level packages whose code enters fingerprints; other code (torch, transformers) is covered by versions.
OWN_PACKAGES = ("backbones", "reprogram")
#: What decoded waveforms depend on: the decoder/resampler and the cache that packs them.
WAVEFORM_MODULES = ("reprogram.data.audio", "reprogram.runtime.cache.waveforms")
#: What a dataset's items depend on beyond its class: decoding, segment bounds and crops.
DATASET_MODULES = ("reprogram.data.audio", "reprogram.data.windows")

_SOURCE_MEMO: dict[str, str] = {}


def read_source(path: str) -> bytes:
    """The bytes of a module's source file (the one place sources are read; tests replace it)."""
    return Path(path).read_bytes()


def _own(module_name: str | None) -> bool:
    return bool(module_name) and module_name.split(".", 1)[0] in OWN_PACKAGES


def _module_file(module_name: str) -> str:
    module = sys.modules.get(module_name)
    if module is None:
        raise KeyError(f"module {module_name!r} is not imported, so its code cannot be fingerprinted; "
                       "import it first or pass the module/object itself")
    path = inspect.getsourcefile(module) or getattr(module, "__file__", None)  # compiled-only: hash the .pyc
    if path is None:
        raise ValueError(f"module {module_name!r} has no file to fingerprint; pass an object defined in a file")
    return str(Path(path).resolve())


def source_digest(module_name: str) -> str:
    """sha256 (hex) of a module's source bytes, read once per process."""
    path = _module_file(module_name)
    if path not in _SOURCE_MEMO:
        _SOURCE_MEMO[path] = hashlib.sha256(read_source(path)).hexdigest()
    return _SOURCE_MEMO[path]


def _classes_of(cls: type) -> set[str]:
    return {c.__module__ for c in cls.__mro__ if _own(c.__module__)}


def code_modules(*objects: Any) -> list[str]:
    """Names of this toolkit's modules that define ``objects`` (sorted, without duplicates).

    Args:
        *objects: module names (``"reprogram.methods.mfcc"``), modules, classes (every class of the MRO),
            functions (their module), bound methods and ``functools.partial`` (their function and owner),
            ``torch.nn.Module`` instances (the MRO of every submodule's class) or other instances (their
            class's MRO). Objects defined outside :data:`OWN_PACKAGES` add nothing.
    """
    names: set[str] = set()
    for obj in objects:
        if isinstance(obj, str):
            if obj not in sys.modules:
                raise KeyError(f"module {obj!r} is not imported; import it before fingerprinting its code")
            names.add(obj)
        elif isinstance(obj, types.ModuleType):
            names.add(obj.__name__)
        elif isinstance(obj, type):
            names |= _classes_of(obj)
        elif isinstance(obj, functools.partial):
            names.update(code_modules(obj.func, *obj.args, *obj.keywords.values()))
        elif isinstance(obj, types.MethodType):
            names.update(code_modules(obj.__func__, obj.__self__))
        elif isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
            names.add(obj.__module__ or "")
        elif hasattr(obj, "modules") and callable(obj.modules) and hasattr(obj, "named_parameters"):
            for sub in obj.modules():  # a torch.nn.Module: its class and every submodule's class
                names |= _classes_of(type(sub))
        elif obj is not None:
            names |= _classes_of(type(obj))
    return sorted(n for n in names if _own(n))


def code_fingerprint(*objects: Any) -> dict[str, Any]:
    """Key part naming the code that computes a result: a sha256 over the sources of its modules.

    Args:
        *objects: what defines the computation (see :func:`code_modules`), e.g. ``code_fingerprint(backbone)``
            or ``code_fingerprint(mfcc_features, dataset)``.

    Returns:
        ``{"digest": 32 hex digits, "modules": [module names]}``; the names are for humans reading a sidecar.
    """
    modules = code_modules(*objects)
    h = hashlib.sha256()
    for name in modules:
        h.update(f"{name}:{source_digest(name)}\n".encode())
    return {"digest": h.hexdigest()[:32], "modules": modules}


def dataset_code(data: Any) -> list[Any]:
    """What a dataset's items are computed by: its class and, for waveform datasets, decoding and cropping."""
    if not hasattr(data, "cache_key_parts"):
        return []
    import reprogram.data.audio  # noqa: F401  (imported so that its source can be fingerprinted)
    import reprogram.data.windows  # noqa: F401

    return [type(data), *DATASET_MODULES]
