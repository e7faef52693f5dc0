"""``torchvision:<video model>``: Kinetics-400 video classifiers from torchvision, frozen.

Input ``(B, C, T, H, W)`` normalised with ``spec.mean``/``spec.std``. The spec comes from the
weights' own metadata: crop size, mean and std from ``Weights.transforms()``, label names from
``Weights.meta["categories"]``, and the clip length T the accuracies were measured with from the
``clip_len=`` the weights' documentation states (a ``frames`` option overrides it).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from backbones.base import Backbone, BackboneOutput
from backbones.hub_cache import load_url_state_dict, url_cached
from reprogram.spec import InputSpec

#: The torchvision video classifiers with Kinetics-400 weights.
VIDEO_MODELS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")


def kinetics_weights(model_name: str):
    """The ``KINETICS400_V1`` weights enum entry of a torchvision video model."""
    from torchvision.models import get_model_weights

    if model_name not in VIDEO_MODELS:
        raise KeyError(f"torchvision:{model_name}: not a torchvision video model; use one of {VIDEO_MODELS}")
    return get_model_weights(model_name).KINETICS400_V1


def clip_frames(weights) -> int:
    """Frames per clip the weights were evaluated with (``clip_len=`` in their docs), at least ``min_temporal_size``."""
    found = re.search(r"clip_len=(\d+)", weights.meta.get("_docs", ""))
    frames = int(found.group(1)) if found else 16
    return max(frames, int(weights.meta.get("min_temporal_size", 1)))


def video_spec(weights, feature_dim: int, frames: int | None = None, size: int | None = None) -> InputSpec:
    """The input spec from a torchvision weights entry (optionally with fewer frames / a smaller crop)."""
    preset = weights.transforms()
    h, w = (size, size) if size else tuple(int(s) for s in preset.crop_size)
    return InputSpec(
        modality="video",
        shape=(3, int(frames or clip_frames(weights)), h, w),
        mean=tuple(float(m) for m in preset.mean),
        std=tuple(float(s) for s in preset.std),
        label_names=tuple(weights.meta["categories"]),
        feature_dim=int(feature_dim),
    )


def classifier_layer(model: nn.Module, num_classes: int) -> tuple[str, nn.Module]:
    """Name and module of the last Linear / Conv3d whose outputs are the class logits (fc, head, classifier.1)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_classes:
            found = (name, module)
        elif isinstance(module, nn.Conv3d) and module.out_channels == num_classes:
            found = (name, module)
    if found is None:
        raise ValueError(f"no layer with {num_classes} outputs in {type(model).__name__}")
    return found


def _in_width(head: nn.Module) -> int:
    return head.in_features if isinstance(head, nn.Linear) else head.in_channels


class VideoBackbone(Backbone):
    """A frozen torchvision video classifier.

    Args:
        model: a built torchvision video model.
        weights: its torchvision weights entry (metadata only; the state dict is loaded by the caller).
        name: the registry name.
        frames: override of the clip length T (e.g. shorter clips); default from the weights' docs.
        size: override of the square crop size (tests); default from the weights' transforms.
    """

    def __init__(self, model: nn.Module, weights, name: str, frames: int | None = None, size: int | None = None):
        super().__init__()
        self.model = model
        self.name = name
        self.head_name, head = classifier_layer(model, len(weights.meta["categories"]))
        self.spec = video_spec(weights, _in_width(head), frames, size)
        self.freeze()

    def checkpoint_blocks(self) -> list[nn.Module]:
        """Units of activation checkpointing (:mod:`reprogram.runtime.accel`): the residual blocks of R3D / MC3 /
        R(2+1)D (``layer1..4``), the blocks of MViT (``blocks``), or the stages of S3D / Swin3D (``features``)."""
        m = self.model
        if all(hasattr(m, f"layer{i}") for i in range(1, 5)):
            return [block for i in range(1, 5) for block in getattr(m, f"layer{i}")]
        if isinstance(getattr(m, "blocks", None), nn.ModuleList):
            return list(m.blocks)
        if isinstance(getattr(m, "features", None), nn.Sequential):
            return list(m.features)
        raise ValueError(f"{self.name}: no known block list in {type(m).__name__}; set accel.checkpointing=false")

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """Args:
            x: ``(B, 3, T, H, W)`` normalised frames.

        Returns:
            ``logits`` ``(B, 400)`` and ``features`` ``(B, D)``: the classifier's input, pooled over any
            remaining space-time positions (S3D's 1x1x1 convolution head).
        """
        captured: list[torch.Tensor] = []
        head = self.model.get_submodule(self.head_name)
        hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            logits = self.model(x)  # (B, 400)
        finally:
            hook.remove()
        feats = captured[-1]
        feats = feats.flatten(2).mean(-1) if feats.dim() > 2 else feats  # (B, D)
        return BackboneOutput(logits=logits, features=feats)


def build(model_name: str, pretrained: bool = True, frames: int | None = None) -> VideoBackbone:
    """Factory of the ``torchvision:`` prefix.

    Args:
        model_name: one of ``VIDEO_MODELS``.
        pretrained: load the Kinetics-400 weights (torch-hub cache, ``TORCH_HOME``); False: random init.
        frames: clip length override (MViT needs exactly 16).
    """
    from torchvision.models import get_model

    weights = kinetics_weights(model_name)
    name = f"torchvision:{model_name}"
    model = get_model(model_name, weights=None, num_classes=len(weights.meta["categories"]))
    if pretrained:
        model.load_state_dict(load_url_state_dict(weights.url, name))
    return VideoBackbone(model.eval(), weights, name, frames=frames)


def describe(model_name: str) -> dict:
    """Spec, parameter count (from the weights' metadata) and cache state, without building or downloading."""
    from torchvision.models import get_model

    weights = kinetics_weights(model_name)
    with torch.device("meta"):
        model = get_model(model_name, weights=None)
    _, head = classifier_layer(model, len(weights.meta["categories"]))
    return {
        "spec": video_spec(weights, _in_width(head)),
        "parameters": int(weights.meta["num_params"]),
        "weights_available": url_cached(weights.url),
    }
