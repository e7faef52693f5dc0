"""``vggish``: AudioSet VGGish embeddings (the ``torchvggish`` port's weights), with its log-mel front end in torch.

The ``torchvggish`` package (a dependency) supplies the published constants (``vggish_params``), the
mel matrix (``mel_features.spectrogram_to_mel_matrix``) and the checkpoint URL. Its own input code is
numpy (no gradients) and its loader calls ``torch.hub`` without ``weights_only``, so here the network
is :class:`VGGishNet` (same layer layout and state-dict keys as the port's ``VGG``, with configurable
widths for the tiny twin) and the checkpoint is read with ``weights_only=True``. Embeddings are the
raw 128-d outputs (no PCA/quantisation: rounding has no gradient); features are their mean over the
0.96 s patches of a clip.
"""

from __future__ import annotations

import torch
from torch import nn

from backbones.base import Backbone, BackboneOutput
from backbones.hub_cache import load_url_state_dict, url_cached
from reprogram.spec import InputSpec

#: The published VGGish layout: conv widths per block ("M" = 2x2 max-pool), fully connected width, embedding size.
VGGISH_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


class VGGishNet(nn.Module):
    """VGGish: 3x3 convs and max-pools over a ``(1, 96, 64)`` log-mel patch, then three ReLU'd Linear layers.

    Args:
        layout: conv widths and ``"M"`` pools, in order.
        fc_width: width of the two hidden fully connected layers (4096 in VGGish).
        embedding_size: output size (128).
        patch: ``(frames, bands)`` of the input patch.
    """

    def __init__(
        self,
        layout: tuple = VGGISH_LAYOUT,
        fc_width: int = 4096,
        embedding_size: int = 128,
        patch: tuple[int, int] = (96, 64),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, pools = 1, 0
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                pools += 1
            else:
                layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        flat = channels * (patch[0] >> pools) * (patch[1] >> pools)
        self.embeddings = nn.Sequential(
            nn.Linear(flat, fc_width),
            nn.ReLU(True),
            nn.Linear(fc_width, fc_width),
            nn.ReLU(True),
            nn.Linear(fc_width, embedding_size),
            nn.ReLU(True),
        )
        self.embedding_size = embedding_size

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``(P, 1, 96, 64)`` log-mel patches -> ``(P, embedding_size)``."""
        x = self.features(patches)  # (P, C, h, w)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # TF's (h, w, C) flattening order, as the port
        return self.embeddings(x)


class VGGishFrontEnd(nn.Module):
    """VGGish's input pipeline in torch: 25 ms periodic-Hann frames every 10 ms, |rfft| (512 points),
    HTK mel matrix 125-7500 Hz (64 bands), ``log(mel + 0.01)``, cut into non-overlapping 0.96 s patches.

    Args:
        num_bands: mel bands (64 in VGGish).
        patch_frames: frames per patch (96).
    """

    def __init__(self, num_bands: int | None = None, patch_frames: int | None = None) -> None:
        super().__init__()
        from torchvggish import mel_features
        from torchvggish import vggish_params as p

        self.sample_rate = int(p.SAMPLE_RATE)
        self.window = int(round(p.SAMPLE_RATE * p.STFT_WINDOW_LENGTH_SECONDS))  # 400
        self.hop = int(round(p.SAMPLE_RATE * p.STFT_HOP_LENGTH_SECONDS))  # 160
        self.n_fft = 1 << (self.window - 1).bit_length()  # 512
        self.log_offset = float(p.LOG_OFFSET)
        self.patch_frames = int(patch_frames or round(p.EXAMPLE_WINDOW_SECONDS / p.STFT_HOP_LENGTH_SECONDS))
        mel = mel_features.spectrogram_to_mel_matrix(
            num_mel_bins=int(num_bands or p.NUM_MEL_BINS),
            num_spectrogram_bins=self.n_fft // 2 + 1,
            audio_sample_rate=p.SAMPLE_RATE,
            lower_edge_hertz=p.MEL_MIN_HZ,
            upper_edge_hertz=p.MEL_MAX_HZ,
        )
        self.register_buffer("mel", torch.as_tensor(mel, dtype=torch.float32), persistent=False)  # (F, M)
        periodic = torch.hann_window(self.window, periodic=True, dtype=torch.float64).float()
        self.register_buffer("hann", periodic, persistent=False)

    def min_samples(self) -> int:
        """Shortest clip that yields one patch."""
        return self.window + (self.patch_frames - 1) * self.hop

    def num_patches(self, lengths: torch.Tensor) -> torch.Tensor:
        """Whole patches in clips of ``lengths`` samples (an incomplete last patch is dropped, as VGGish does)."""
        frames = torch.div(lengths - self.window, self.hop, rounding_mode="floor") + 1
        return torch.div(frames.clamp_min(0), self.patch_frames, rounding_mode="floor")

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` -> ``(B, frames, bands)``."""
        frames = wave.unfold(-1, self.window, self.hop) * self.hann  # (B, T, 400)
        magnitude = torch.fft.rfft(frames, n=self.n_fft).abs()  # (B, T, 257)
        return torch.log(magnitude @ self.mel + self.log_offset)  # (B, T, M)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` -> patches ``(B, P, patch_frames, bands)`` (whole patches only)."""
        if wave.shape[-1] < self.min_samples():
            raise ValueError(
                f"VGGish needs clips of at least {self.min_samples()} samples "
                f"({self.min_samples() / self.sample_rate:.3f} s at {self.sample_rate} Hz), got {wave.shape[-1]}"
            )
        spec = self.log_mel(wave)  # (B, T, M)
        patches = spec.shape[1] // self.patch_frames
        return spec[:, : patches * self.patch_frames].reshape(wave.shape[0], patches, self.patch_frames, -1)


class VGGishBackbone(Backbone):
    """Frozen VGGish on waveforms.

    Args:
        net: a :class:`VGGishNet`.
        frontend: its :class:`VGGishFrontEnd` (band count must match the net's patch).
        name: the registry name.
    """

    def __init__(self, net: VGGishNet, frontend: VGGishFrontEnd, name: str) -> None:
        super().__init__()
        self.model = net
        self.frontend = frontend
        self.name = name
        self.spec = InputSpec(
            modality="audio", shape=(-1,), sample_rate=frontend.sample_rate, feature_dim=net.embedding_size
        )
        self.freeze()

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> BackboneOutput:
        """Args:
            wave: ``(B, N)`` at 16 kHz, at least 0.975 s.
            lengths: optional ``(B,)`` valid samples; patches past a clip's end are left out of its mean.

        Returns:
            ``features`` ``(B, 128)``: mean of the per-patch embeddings over the clip's whole patches.
        """
        patches = self.frontend(wave)  # (B, P, 96, 64)
        b, p = patches.shape[:2]
        emb = self.model(patches.reshape(b * p, 1, *patches.shape[2:])).reshape(b, p, -1)  # (B, P, E)
        mask = None
        if lengths is not None:
            valid = self.frontend.num_patches(torch.as_tensor(lengths, device=wave.device)).clamp(1, p)
            mask = torch.arange(p, device=wave.device)[None, :] < valid[:, None]  # (B, P)
        weights = torch.ones(b, p, 1, device=wave.device) if mask is None else mask[..., None].to(emb.dtype)
        features = (emb * weights).sum(1) / weights.sum(1)
        return BackboneOutput(logits=None, features=features)


def build(pretrained: bool = True) -> VGGishBackbone:
    """Factory of ``vggish``: the published architecture with the port's AudioSet weights (``TORCH_HOME`` cache)."""
    from torchvggish.torchvggish import VGGISH_WEIGHTS

    net = VGGishNet()
    if pretrained:
        net.load_state_dict(load_url_state_dict(VGGISH_WEIGHTS, "vggish"))
    return VGGishBackbone(net.eval(), VGGishFrontEnd(), "vggish")


def describe() -> dict:
    """Spec, parameter count (meta-device build) and whether the port's checkpoint is cached."""
    from torchvggish import vggish_params
    from torchvggish.torchvggish import VGGISH_WEIGHTS

    with torch.device("meta"):
        net = VGGishNet()
    spec = InputSpec("audio", (-1,), int(vggish_params.SAMPLE_RATE), feature_dim=net.embedding_size)
    params = sum(p.numel() for p in net.parameters())
    return {"spec": spec, "parameters": params, "weights_available": url_cached(VGGISH_WEIGHTS)}
