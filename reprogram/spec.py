"""What a frozen backbone expects as input, filled from its library's own metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Modality = Literal["image", "video", "speech", "audio"]
MODALITIES: tuple[str, ...] = ("image", "video", "speech", "audio")


@dataclass(frozen=True)
class InputSpec:
    """The input a backbone expects, per example (no batch dimension).

    Args:
        modality: ``image`` (shape ``(C, H, W)``), ``video`` (shape ``(C, T, H, W)``, torchvision's
            video layout), ``speech`` or ``audio`` (shape ``(N,)``: a mono waveform at ``sample_rate``;
            ``N == -1`` means any length). ``audio`` backbones (AST, VGGish) compute their own fixed
            spectrogram front end from the waveform; ``speech`` backbones are self-supervised or ASR
            encoders with hidden states.
        shape: per-example input shape as above.
        sample_rate: waveform rate in Hz for ``speech``/``audio``; ``None`` for pixels.
        mean: per-channel normalisation mean the backbone was trained with (pixels), or ``None``.
        std: per-channel normalisation std, or ``None``.
        label_names: names of the source labels when the backbone is a classifier; empty otherwise.
        feature_dim: width of the pooled feature vector the backbone returns.
        num_layers: number of hidden states returned (speech encoders), 0 otherwise.
    """

    modality: Modality
    shape: tuple[int, ...]
    sample_rate: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    label_names: tuple[str, ...] = field(default=(), repr=False)
    feature_dim: int | None = None
    num_layers: int = 0

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"InputSpec.modality={self.modality!r}; use one of {MODALITIES}")
        ndim = {"image": 3, "video": 4, "speech": 1, "audio": 1}[self.modality]
        if len(self.shape) != ndim:
            raise ValueError(f"InputSpec for {self.modality} needs a {ndim}-d shape, got {self.shape}")
        if self.modality in ("speech", "audio") and not self.sample_rate:
            raise ValueError(f"InputSpec for {self.modality} needs sample_rate")
        if (self.mean is None) != (self.std is None):
            raise ValueError("InputSpec.mean and InputSpec.std go together: give both or neither")

    @property
    def num_labels(self) -> int:
        """Number of source labels (0 for feature extractors)."""
        return len(self.label_names)

    @property
    def channels(self) -> int:
        """Channel count for pixel inputs."""
        if self.modality not in ("image", "video"):
            raise ValueError(f"{self.modality} inputs have no channels")
        return self.shape[0]

    @property
    def height_width(self) -> tuple[int, int]:
        """(H, W) for pixel inputs."""
        if self.modality not in ("image", "video"):
            raise ValueError(f"{self.modality} inputs have no height/width")
        return self.shape[-2], self.shape[-1]

    @property
    def frames(self) -> int:
        """Frame count T for video inputs."""
        if self.modality != "video":
            raise ValueError(f"{self.modality} inputs have no frames")
        return self.shape[1]

    def summary(self) -> dict:
        """JSON-friendly description (label names elided to their count)."""
        return {
            "modality": self.modality,
            "shape": list(self.shape),
            "sample_rate": self.sample_rate,
            "mean": list(self.mean) if self.mean else None,
            "std": list(self.std) if self.std else None,
            "num_labels": self.num_labels,
            "feature_dim": self.feature_dim,
            "num_layers": self.num_layers,
        }
