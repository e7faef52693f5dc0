"""``offline:efficientnet_lite0_video``: EfficientNet-Lite0 inflated to 3-D, I3D style.

A STAND-IN for a video-pretrained model: no video weights can be had on a machine without hub access,
so the ImageNet EfficientNet-Lite0 is "inflated" as in Carreira & Zisserman (2017, I3D): every ``k x k``
convolution kernel is repeated over a temporal extent ``t`` and divided by ``t``, so that a clip of
identical frames (a "boring video") gives exactly the 2-D network's activations on one frame.

Choices (documented because they are ours, not the paper's numbers):

- temporal extent ``t = temporal_kernel`` (default 3) for the spatial convolutions (stem and every
  depthwise convolution); pointwise ``1 x 1`` convolutions become ``1 x 1 x 1``. Temporal stride 1
  everywhere, so the T frames are kept to the global pool.
- depthwise convolutions stay depthwise (``groups = channels``).
- temporal padding replicates the edge frames ("same" length), so the boring-video identity holds at the
  clip's ends as well; spatial padding is TensorFlow "same" zero padding as in the 2-D network.
- ``BatchNorm2d`` becomes ``BatchNorm3d`` with the same affine parameters and running statistics.
- the classifier and label names are the 2-D model's (ImageNet-1k): there are no Kinetics labels here.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from backbones.base import Backbone, BackboneOutput
from backbones.offline.efficientnet import (
    LITE_MEAN,
    LITE_STD,
    imagenet_label_names,
    lite0_input_size,
    load_lite0_network,
)
from reprogram.spec import InputSpec


class SameConv3d(nn.Conv3d):
    """3-D convolution with replicate temporal padding and TensorFlow-"same" zero spatial padding.

    Output size: ``(T, ceil(H / s), ceil(W / s))`` for spatial stride ``s`` and temporal stride 1.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        kt, kh, kw = self.weight.shape[-3:]
        pt = kt - 1
        if pt:
            x = F.pad(x, (0, 0, 0, 0, pt // 2, pt - pt // 2), mode="replicate")
        ih, iw = x.shape[-2:]
        sh, sw = self.stride[1], self.stride[2]
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv3d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def inflate_conv(conv: nn.Conv2d, temporal_kernel: int) -> SameConv3d:
    """I3D inflation of one 2-D convolution.

    Args:
        conv: a 2-D convolution with weight ``(O, I/groups, kh, kw)``.
        temporal_kernel: temporal extent t for kernels larger than ``1 x 1`` (pointwise kernels get t = 1).

    Returns:
        A :class:`SameConv3d` with weight ``(O, I/groups, t, kh, kw)`` = the 2-D kernel repeated t times / t.
    """
    kh, kw = conv.weight.shape[-2:]
    t = temporal_kernel if (kh, kw) != (1, 1) else 1
    out = SameConv3d(
        conv.in_channels,
        conv.out_channels,
        kernel_size=(t, kh, kw),
        stride=(1, *conv.stride),
        dilation=(1, *conv.dilation),
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        out.weight.copy_(conv.weight.unsqueeze(2).repeat(1, 1, t, 1, 1) / t)
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out


def inflate_batchnorm(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    """``BatchNorm3d`` with ``bn``'s affine parameters and running statistics."""
    out = nn.BatchNorm3d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine)
    out.load_state_dict(bn.state_dict())
    return out


def inflate_network(net: nn.Module, temporal_kernel: int) -> nn.Module:
    """A deep copy of ``net`` with every Conv2d / BatchNorm2d replaced by its inflated 3-D counterpart.

    The copied modules' own forward code (EfficientNet-Lite's MBConv blocks: convolutions, batch norm,
    ReLU6 and residual sums, no squeeze-excitation) is dimension-agnostic, so it runs on 5-D tensors.
    """
    if temporal_kernel < 1 or temporal_kernel % 2 == 0:
        raise ValueError(f"temporal_kernel must be an odd positive integer (1, 3, 5...), got {temporal_kernel}")
    net3d = copy.deepcopy(net)
    for parent in list(net3d.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.Conv2d):
                setattr(parent, child_name, inflate_conv(child, temporal_kernel))
            elif isinstance(child, nn.BatchNorm2d):
                setattr(parent, child_name, inflate_batchnorm(child))
    leftover = [n for n, m in net3d.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d))]
    assert not leftover, leftover
    return net3d


class EfficientNetLite0Video(Backbone):
    """Frozen I3D-inflated EfficientNet-Lite0 on clips ``(B, 3, T, H, W)`` (torchvision's video layout).

    Args:
        frames: T in the spec (default 8); the network accepts any T >= 1.
        temporal_kernel: temporal extent of the inflated spatial kernels (odd, default 3).
        name: registry name.
    """

    def __init__(self, frames: int = 8, temporal_kernel: int = 3, name: str = "offline:efficientnet_lite0_video"):
        super().__init__()
        if frames < 1:
            raise ValueError(f"{name}: frames must be >= 1, got {frames}")
        self.name = name
        self.temporal_kernel = int(temporal_kernel)
        self.net = inflate_network(load_lite0_network(), self.temporal_kernel)
        size = lite0_input_size()
        self.spec = InputSpec(
            modality="video",
            shape=(3, int(frames), size, size),
            mean=LITE_MEAN,
            std=LITE_STD,
            label_names=imagenet_label_names(),
            feature_dim=int(self.net._fc.in_features),
        )
        self.freeze()

    def checkpoint_blocks(self) -> list[nn.Module]:
        """The 16 inflated MBConv blocks, the units of activation checkpointing (:mod:`reprogram.runtime.accel`)."""
        return list(self.net._blocks)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """Args:
            x: ``(B, 3, T, H, W)`` normalised frames.

        Returns:
            :class:`BackboneOutput` with ImageNet ``logits`` ``(B, 1000)`` and ``features`` ``(B, 1280)``
            (mean over time and space of the head activations).
        """
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"{self.name} takes (B, 3, T, H, W) clips, got shape {tuple(x.shape)}")
        fmap = self.net.extract_features(x)  # (B, 1280, T, H/32, W/32)
        features = fmap.mean(dim=(2, 3, 4))  # (B, 1280)
        return BackboneOutput(logits=self.net._fc(features), features=features)


def build(frames: int = 8, temporal_kernel: int = 3) -> EfficientNetLite0Video:
    """Registry factory for ``offline:efficientnet_lite0_video``."""
    return EfficientNetLite0Video(frames=frames, temporal_kernel=temporal_kernel)
