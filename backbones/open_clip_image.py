"""``open_clip:<arch>/<pretrained tag>``: a CLIP image encoder with a zero-shot text head over class-name prompts.

Source labels default to open_clip's own ImageNet-1k class names; the text head is the normalised
mean text embedding of each class over prompt templates (open_clip's ``build_zero_shot_classifier``),
and logits are ``logit_scale * <image embedding, class embedding>`` as in CLIP zero-shot
classification. :meth:`OpenClipBackbone.text_embeddings` embeds any prompts (semantic label mapping).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from backbones.base import Backbone, BackboneOutput, offline_error
from backbones.hub_cache import cache_var_for, hf_cached
from reprogram.spec import InputSpec

#: Prompt template sets: open_clip's 7 "simple" ImageNet templates, its 80 OpenAI ones, or one plain prompt.
TEMPLATE_SETS = ("simple", "openai", "photo")


def templates_for(kind: str | Sequence[str]) -> tuple:
    """Prompt templates by name (``TEMPLATE_SETS``) or as given (``"a photo of a {}."`` format strings)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    if not isinstance(kind, str):
        return tuple(kind)
    table = {"simple": SIMPLE_IMAGENET_TEMPLATES, "openai": OPENAI_IMAGENET_TEMPLATES, "photo": ("a photo of a {}.",)}
    if kind not in table:
        raise ValueError(f"templates={kind!r}; use one of {TEMPLATE_SETS} or a list of '... {{}} ...' strings")
    return tuple(table[kind])


def clip_spec(preprocess_cfg: dict, embed_dim: int, label_names: Sequence[str]) -> InputSpec:
    """An image spec from an open_clip ``PreprocessCfg`` dict (size, mean, std)."""
    size = preprocess_cfg["size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return InputSpec(
        modality="image",
        shape=(3, int(h), int(w)),
        mean=tuple(float(m) for m in preprocess_cfg["mean"]),
        std=tuple(float(s) for s in preprocess_cfg["std"]),
        label_names=tuple(label_names),
        feature_dim=int(embed_dim),
    )


class OpenClipBackbone(Backbone):
    """A frozen open_clip model: image encoder plus zero-shot text head.

    Args:
        model: a built open_clip ``CLIP``-style model (``encode_image``, ``encode_text``, ``logit_scale``) whose
            ``visual.preprocess_cfg`` is set (open_clip's factory sets it).
        tokenizer: the matching open_clip tokenizer.
        name: the registry name.
        class_names: source-label names for the text head (default: open_clip's ImageNet-1k names).
        templates: prompt templates, a name from ``TEMPLATE_SETS`` or format strings with ``{}``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        name: str,
        class_names: Sequence[str] | None = None,
        templates: str | Sequence[str] = "simple",
    ) -> None:
        super().__init__()
        from open_clip import get_model_preprocess_cfg
        from open_clip.zero_shot_classifier import build_zero_shot_classifier
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        names = tuple(class_names) if class_names is not None else tuple(IMAGENET_CLASSNAMES)
        device = next(model.parameters()).device
        head = build_zero_shot_classifier(model, tokenizer, names, templates_for(templates), 50, device)  # (D, K)
        self.register_buffer("text_head", head.T.contiguous())  # (K, D), unit rows
        self.spec = clip_spec(get_model_preprocess_cfg(model), head.shape[0], names)
        self.freeze()

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        """Unit-norm text embeddings ``(K, D)`` of ``prompts`` (for semantic label mapping)."""
        if not prompts:
            raise ValueError("text_embeddings needs at least one prompt")
        tokens = self.tokenizer(list(prompts)).to(self.text_head.device)
        return self.model.encode_text(tokens, normalize=True)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """Args:
            x: ``(B, 3, H, W)`` normalised pixels.

        Returns:
            ``features`` = unit-norm image embeddings ``(B, D)``; ``logits`` ``(B, K)`` against the text head.
        """
        emb = self.model.encode_image(x, normalize=True)  # (B, D)
        logits = self.model.logit_scale.exp() * emb @ self.text_head.T  # (B, K)
        return BackboneOutput(logits=logits, features=emb)


def _split(rest: str) -> tuple[str, str]:
    """``"ViT-B-32/laion2b_s34b_b79k"`` -> (arch, tag), checked against open_clip's registry."""
    import open_clip

    arch, _, tag = rest.partition("/")
    if arch not in open_clip.list_models():
        raise KeyError(f"open_clip has no architecture {arch!r}; see open_clip.list_models(), e.g. 'ViT-B-32'")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        raise KeyError(f"open_clip:{rest}: use open_clip:{arch}/<tag> with a tag from {tags}")
    return arch, tag


def build(rest: str, checkpoint: str | Path | None = None, **options) -> OpenClipBackbone:
    """Factory of the ``open_clip:`` prefix.

    Args:
        rest: ``"<arch>/<pretrained tag>"``.
        checkpoint: a local open_clip checkpoint to load instead of downloading the tag's weights.
        **options: ``class_names`` / ``templates`` for :class:`OpenClipBackbone`.
    """
    import open_clip

    arch, tag = _split(rest)
    name = f"open_clip:{rest}"
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{name}: checkpoint {checkpoint} does not exist")
    try:
        model = open_clip.create_model(arch, pretrained=str(checkpoint) if checkpoint else tag, weights_only=True)
    except (OSError, RuntimeError) as err:  # open_clip re-raises download failures as RuntimeError
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        raise offline_error(name, cache_var_for(cfg.get("hf_hub")), err) from None
    return OpenClipBackbone(model, open_clip.get_tokenizer(arch), name, **options)


def weights_available(arch: str, tag: str) -> bool:
    """Whether the tag's weights are in the HF hub cache or open_clip's URL cache (``~/.cache/clip``)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        names = (filename,) if filename else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        if hf_cached(repo, names):
            return True
    url = cfg.get("url", "")
    return bool(url) and (Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)).is_file()


def describe(rest: str) -> dict:
    """Spec (ImageNet class-name head), parameter count (meta-device build) and weight availability, offline."""
    import open_clip
    from open_clip.transform import PreprocessCfg
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    arch, tag = _split(rest)
    model_cfg = open_clip.get_model_config(arch)
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag)
    pp = PreprocessCfg(size=model_cfg["vision_cfg"].get("image_size", 224))
    pp_dict = {"size": pp.size, "mean": tag_cfg.get("mean", pp.mean), "std": tag_cfg.get("std", pp.std)}
    try:
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # open_clip warns that a weightless build is random: intended here
        try:
            with torch.device("meta"):
                model = open_clip.create_model(arch, pretrained=None, pretrained_text=False, device="meta")
        finally:
            logging.disable(previous)
        params = sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - towers built from HF text models need their config (a download)
        params = None
    return {
        "spec": clip_spec(pp_dict, model_cfg["embed_dim"], IMAGENET_CLASSNAMES),
        "parameters": params,
        "weights_available": weights_available(arch, tag),
    }
