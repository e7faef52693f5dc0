"""Spectrogram -> image: resize, channel mapping, normalisation, and AutoVP-style learned placement.

All modules are differentiable. Pixel values live in ``[0, 1]`` until :class:`Normalise` maps them to the
backbone's ``spec.mean`` / ``spec.std``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CHANNEL_MAPPINGS = ("replicate", "learned", "<matplotlib colormap name, e.g. viridis>")


class SpecToImage(nn.Module):
    """``(B, n_mels, frames)`` in ``[0, 1]`` -> ``(B, C, h, w)`` image, low frequencies at the bottom.

    Args:
        size: inner image size ``(h, w)`` (the program's inner size, read from the backbone's spec).
        channels: C, the backbone's channel count.
        colour: ``"replicate"`` (the grey image copied to every channel), ``"learned"`` (a trainable 1x1
            colour mapping ``C*1 + C`` parameters, initialised to replicate), or the name of a matplotlib
            colormap (``"viridis"``, ``"magma"``...) applied as a fixed 256-entry lookup table with linear
            interpolation between entries (differentiable).
    """

    def __init__(self, size: tuple[int, int], channels: int, colour: str = "replicate") -> None:
        super().__init__()
        if min(size) < 1:
            raise ValueError(f"SpecToImage: inner size {size} must be positive; lower the program's budget")
        self.size = (int(size[0]), int(size[1]))
        self.channels = channels
        self.colour = colour
        self.mix: nn.Conv2d | None = None
        if colour == "learned":
            self.mix = nn.Conv2d(1, channels, kernel_size=1)
            nn.init.ones_(self.mix.weight)
            nn.init.zeros_(self.mix.bias)
        elif colour != "replicate":
            self.register_buffer("lut", _colormap_lut(colour, channels), persistent=False)  # (L, C)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Args: spec: ``(B, F, T)`` in ``[0, 1]``. Returns: ``(B, C, h, w)``."""
        grey = spec.flip(1).unsqueeze(1)  # (B, 1, F, T), row 0 = highest band
        down = grey.shape[-2] > self.size[0] or grey.shape[-1] > self.size[1]
        grey = F.interpolate(grey, size=self.size, mode="bilinear", align_corners=False, antialias=down)
        return self.map_channels(grey)

    def map_channels(self, grey: torch.Tensor) -> torch.Tensor:
        """Args: grey: ``(B, 1, h, w)``. Returns: ``(B, C, h, w)``."""
        if self.mix is not None:
            return self.mix(grey)
        if self.colour == "replicate":
            return grey.expand(-1, self.channels, -1, -1)
        lut = self.lut  # (L, C)
        pos = grey.squeeze(1).clamp(0.0, 1.0) * (lut.shape[0] - 1)  # (B, h, w)
        lo = pos.detach().floor().clamp(max=lut.shape[0] - 2).long()
        frac = (pos - lo).unsqueeze(-1)  # (B, h, w, 1)
        rgb = lut[lo] * (1 - frac) + lut[lo + 1] * frac  # (B, h, w, C)
        return rgb.permute(0, 3, 1, 2)


def _colormap_lut(name: str, channels: int, entries: int = 256) -> torch.Tensor:
    """``(entries, channels)`` fixed colour table from matplotlib."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError as err:
        raise ValueError(f"unknown channel mapping {name!r}; use one of {CHANNEL_MAPPINGS}") from err
    if channels != 3:
        raise ValueError(f"colormap {name!r} makes 3 channels but the backbone takes {channels}; use 'replicate'")
    rgba = cmap(torch.linspace(0, 1, entries).numpy())  # (entries, 4)
    return torch.tensor(rgba[:, :3], dtype=torch.float32)


class Normalise(nn.Module):
    """``(x - mean) / std`` per channel, from the backbone's spec (identity when the spec has none).

    Args:
        mean: per-channel means, or ``None``.
        std: per-channel standard deviations, or ``None``.
        channel_dim: index of the channel axis counted from the end (-3 for ``(..., C, H, W)``).
    """

    def __init__(self, mean: tuple[float, ...] | None, std: tuple[float, ...] | None, channel_dim: int = -3) -> None:
        super().__init__()
        shape = [1] * (-channel_dim)
        shape[0] = -1
        m = torch.tensor(mean if mean is not None else [0.0]).view(shape)
        s = torch.tensor(std if std is not None else [1.0]).view(shape)
        self.register_buffer("mean", m, persistent=False)
        self.register_buffer("std", s, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def centre_pad(inner: torch.Tensor, canvas_hw: tuple[int, int]) -> torch.Tensor:
    """Place ``(B, C, h, w)`` at the centre of a zero ``(B, C, H, W)`` canvas (extra pixel at bottom/right)."""
    h, w = inner.shape[-2:]
    H, W = canvas_hw
    if h > H or w > W:
        raise ValueError(f"inner image {h}x{w} does not fit the {H}x{W} canvas; lower inner_size")
    top, left = (H - h) // 2, (W - w) // 2
    return F.pad(inner, (left, W - w - left, top, H - h - top))


class LearnedPlacement(nn.Module):
    """AutoVP-style learned input scale: the inner image is resampled onto the canvas at a trainable size.

    One trainable scalar per axis (log scale, initialised to 0 = the inner image at its own pixel size,
    centred, i.e. the same placement as :func:`centre_pad` up to float rounding of the sampling grid).
    The size is limited to ``[min_scale, canvas/inner]`` times the inner size.

    Args:
        inner_hw: the inner image size ``(h, w)``.
        canvas_hw: the canvas size ``(H, W)``.
        min_scale: smallest allowed scale factor.
    """

    def __init__(self, inner_hw: tuple[int, int], canvas_hw: tuple[int, int], min_scale: float = 0.25) -> None:
        super().__init__()
        self.inner_hw, self.canvas_hw = inner_hw, canvas_hw
        self.log_scale = nn.Parameter(torch.zeros(2))  # (y, x)
        self.register_buffer("base", torch.tensor([inner_hw[0] / canvas_hw[0], inner_hw[1] / canvas_hw[1]]))
        self.lo = math.log(min_scale)
        self.register_buffer("hi", torch.log(1.0 / self.base), persistent=False)

    def scale(self) -> torch.Tensor:
        """``(2,)`` current scale factors (y, x) relative to the inner image's own size."""
        return torch.exp(torch.minimum(self.log_scale.clamp_min(self.lo), self.hi))

    def forward(self, inner: torch.Tensor) -> torch.Tensor:
        """Args: inner: ``(B, C, h, w)``. Returns: ``(B, C, H, W)`` with zeros outside the placed image."""
        B, C = inner.shape[:2]
        rel = self.base * self.scale()  # (2,) fraction of the canvas the inner image covers
        zero = torch.zeros((), dtype=inner.dtype, device=inner.device)
        theta = torch.stack([torch.stack([1.0 / rel[1], zero, zero]), torch.stack([zero, 1.0 / rel[0], zero])])
        theta = theta.to(inner.dtype).expand(B, 2, 3)  # (B, 2, 3) output -> input sampling map
        grid = F.affine_grid(theta, [B, C, *self.canvas_hw], align_corners=False)  # (B, H, W, 2)
        return F.grid_sample(inner, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
