"""Where hub-loaded weights live on this machine, and whether they are there, without touching the network."""

from __future__ import annotations

import os
from pathlib import Path


def hf_cached(repo_id: str, filenames: tuple[str, ...]) -> bool:
    """True if any of ``filenames`` of the HuggingFace repo ``repo_id`` is in the local hub cache (``HF_HOME``)."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        try:
            found = try_to_load_from_cache(repo_id, filename)
        except ValueError:  # not a valid repo id
            return False
        if isinstance(found, str) and os.path.isfile(found):
            return True
    return False


def url_cached(url: str) -> bool:
    """True if the torch-hub download of ``url`` is in ``$TORCH_HOME/hub/checkpoints``."""
    import torch.hub

    if not url:
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)).is_file()


def cache_var_for(hf_hub_id: str | None) -> str:
    """The environment variable naming the cache a download would land in."""
    return "HF_HOME" if hf_hub_id else "TORCH_HOME"


def count_parameters_on_meta(build) -> int | None:
    """Parameter count of the module returned by ``build()``, constructed on the meta device (no memory, no weights).

    Returns ``None`` if the constructor cannot run on the meta device.
    """
    import torch

    try:
        with torch.device("meta"):
            module = build()
    except Exception:  # noqa: BLE001 - some constructors touch real tensors; a count is then unavailable
        return None
    return sum(p.numel() for p in module.parameters())


def offline_mode() -> bool:
    """True when ``HF_HUB_OFFLINE`` says so; then torch-hub URL downloads are not attempted either."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def load_url_state_dict(url: str, model_id: str) -> dict:
    """A torch-hub download of a state dict (``weights_only=True``), or one clear offline error.

    Args:
        url: the published checkpoint URL (cached under ``$TORCH_HOME/hub/checkpoints``).
        model_id: the backbone name, for the error message.
    """
    import torch.hub

    from backbones.base import offline_error

    if offline_mode() and not url_cached(url):
        raise offline_error(model_id, "TORCH_HOME", FileNotFoundError(f"{os.path.basename(url)} not cached"))
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True)
    except OSError as err:  # URLError, HTTPError and socket errors are OSErrors
        raise offline_error(model_id, "TORCH_HOME", err) from None
