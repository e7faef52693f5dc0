"""Generate a synthetic corpus once per config, atomically, into a cache folder named by the config's hash."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from reprogram.data.synth.config import SyntheticConfig
from reprogram.data.synth.corpus import generate_corpus


def default_cache_dir() -> Path:
    """``$REPROGRAM_CACHE/synthetic`` or ``~/.cache/gibbon-reprogram/synthetic``."""
    root = os.environ.get("REPROGRAM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "gibbon-reprogram") / "synthetic"


def ensure_corpus(config: SyntheticConfig | None = None, cache_dir: str | Path | None = None) -> Path:
    """Return the manifest of ``config``'s corpus, generating it first if it is not cached.

    The corpus lives in ``<cache_dir>/<config.cache_key()>/``. It is generated into a temporary sibling
    folder and renamed into place, so a crash never leaves a half-written corpus under the final name; a
    folder without its ``manifest.csv`` (written last) counts as incomplete and is regenerated.

    Args:
        config: the corpus parameters (default ``SyntheticConfig()``); the full config and the generator
            version form the key.
        cache_dir: parent folder of the cached corpora (default :func:`default_cache_dir`).

    Returns:
        Path of the corpus's ``manifest.csv``.
    """
    config = SyntheticConfig() if config is None else config
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / config.cache_key()
    manifest = final / "manifest.csv"
    if manifest.is_file():
        return manifest
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        generate_corpus(tmp, config)
        if final.exists() and not manifest.is_file():
            shutil.rmtree(final)  # an incomplete corpus left by an older, interrupted writer
        try:
            os.rename(tmp, final)
        except OSError:
            if not manifest.is_file():  # not a concurrent writer finishing first: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest
