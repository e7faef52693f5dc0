"""``timm:<model name>``: any timm image classifier, frozen, with ImageNet label names from timm's own metadata.

Input ``(B, C, H, W)`` already normalised with ``spec.mean``/``spec.std`` (the input transform reads
them); output: source logits and the pooled pre-logit features.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from backbones.base import Backbone, BackboneOutput, offline_error
from backbones.hub_cache import cache_var_for, hf_cached, url_cached
from reprogram.spec import InputSpec


def timm_label_names(model: nn.Module) -> tuple[str, ...]:
    """Human-readable source-label names from timm's ImageNet metadata (``()`` when the head is not ImageNet's)."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    num_classes = int(getattr(model, "num_classes", 0) or 0)
    subset = infer_imagenet_subset(model) if num_classes else None
    if not subset:
        return ()
    names = tuple(ImageNetInfo(subset).label_descriptions())
    return names if len(names) == num_classes else ()


def timm_spec(model: nn.Module) -> InputSpec:
    """The input spec from the model's ``pretrained_cfg`` through ``timm.data.resolve_data_config``."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    shape = tuple(int(s) for s in cfg["input_size"])
    built = getattr(getattr(model, "patch_embed", None), "img_size", None)  # fixed-size nets: what was built wins
    if built is not None and tuple(built) != shape[1:]:
        shape = (shape[0], *(int(s) for s in built))  # e.g. create_model(..., img_size=96)
    return InputSpec(
        modality="image",
        shape=shape,
        mean=tuple(float(m) for m in cfg["mean"]),
        std=tuple(float(s) for s in cfg["std"]),
        label_names=timm_label_names(model),
        feature_dim=int(getattr(model, "head_hidden_size", None) or model.num_features),
    )


class TimmBackbone(Backbone):
    """A frozen timm model.

    Args:
        model: a built timm model (``timm.create_model(...)``).
        name: the registry name.
    """

    def __init__(self, model: nn.Module, name: str) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.spec = timm_spec(model)
        self.freeze()

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """Args:
            x: ``(B, C, H, W)`` normalised pixels, ``(C, H, W) == spec.shape``.

        Returns:
            ``logits`` ``(B, S)`` (None for a headless model) and pre-logit ``features`` ``(B, D)``.
        """
        fmap = self.model.forward_features(x)  # (B, ...) unpooled
        features = self.model.forward_head(fmap, pre_logits=True)  # (B, D)
        logits = self.model.forward_head(fmap) if self.spec.num_labels or self.model.num_classes else None
        return BackboneOutput(logits=logits, features=features)


def _check_name(model_name: str) -> None:
    """Raise a ``KeyError`` naming close matches for an unknown architecture or pretrained tag."""
    import difflib

    import timm

    arch = model_name.split(".")[0]
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(arch, timm.list_models(), n=6)
        raise KeyError(f"timm has no model {arch!r} (close: {close}); see timm.list_models(), e.g. 'timm:resnet50'")
    if "." in model_name and model_name not in timm.list_pretrained(f"{arch}.*"):
        raise KeyError(f"timm has no pretrained tag {model_name!r}; available: {timm.list_pretrained(f'{arch}.*')}")


def build(model_name: str, pretrained: bool = True, checkpoint: str | Path | None = None, **kwargs) -> TimmBackbone:
    """Factory of the ``timm:`` prefix.

    Args:
        model_name: a timm name with optional pretrained tag (``"resnet50.a1_in1k"``).
        pretrained: download (or read from the cache) the pretrained weights; False for random init.
        checkpoint: a local ``.safetensors``/``.pth`` state dict to load instead (read with ``weights_only``).
        **kwargs: passed to ``timm.create_model`` (e.g. ``img_size``).
    """
    import timm

    _check_name(model_name)
    name = f"timm:{model_name}"
    if checkpoint is not None:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{name}: checkpoint {checkpoint} does not exist; pass the path of a state dict")
        model = timm.create_model(model_name, pretrained=False, checkpoint_path=str(checkpoint), **kwargs)
    elif pretrained:
        try:
            model = timm.create_model(model_name, pretrained=True, **kwargs)
        except (OSError, RuntimeError) as err:  # hub / url download failures surface as these
            cfg = timm.models.get_pretrained_cfg(model_name)
            raise offline_error(name, cache_var_for(getattr(cfg, "hf_hub_id", None)), err) from None
    else:
        model = timm.create_model(model_name, pretrained=False, **kwargs)
    return TimmBackbone(model.eval(), name)


def weights_available(model_name: str) -> bool:
    """Whether the pretrained weights of ``model_name`` are already in the local HF / torch-hub cache."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None:
        return False
    if cfg.hf_hub_id and hf_cached(cfg.hf_hub_id, ("model.safetensors", "pytorch_model.bin")):
        return True
    return url_cached(cfg.url or "")


def describe(model_name: str) -> dict:
    """Spec, parameter count and weight availability without downloading (the model is built on the meta device)."""
    import timm

    _check_name(model_name)
    with torch.device("meta"):  # shapes only: no memory, no download
        model = timm.create_model(model_name, pretrained=False)
    params = sum(p.numel() for p in model.parameters())
    return {"spec": timm_spec(model), "parameters": params, "weights_available": weights_available(model_name)}
