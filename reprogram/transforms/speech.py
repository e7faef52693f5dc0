"""Waveform programs for speech and raw-audio backbones (Voice2Series, Yang et al. 2021).

* ``mode="embed"``: the clip is placed inside a longer learned universal waveform:
  ``x' = [epsilon*tanh(theta_before), x, epsilon*tanh(theta_after)]``. The budget is the number of learned
  seconds; parameters = exactly the learned samples. With ``theta = 0`` the output is the clip padded
  with silence, which is the plain reference.
* ``mode="additive"``: a bounded perturbation over the clip: ``x' = x + epsilon*tanh(theta)``; the budget
  is epsilon; parameters = the clip's sample count at the backbone's rate (fixed at construction).

The waveform is resampled from the data's rate to ``spec.sample_rate`` only when they differ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import nn

from reprogram.spec import InputSpec
from reprogram.transforms.base import InputTransform

WAVE_MODES = ("embed", "additive")


class WaveformProgram(InputTransform):
    """Learned waveform program.

    Args:
        spec: speech or audio backbone spec (``shape == (N,)``, ``N == -1`` for any length).
        sample_rate: the data's waveform rate in Hz.
        mode: ``embed`` or ``additive``.
        budget: ``embed``: learned seconds in total (split evenly before/after the clip); ignored when the
            backbone takes a fixed length (then the learned part fills the rest). ``additive``: epsilon.
        clip_seconds: the clip length; required for ``additive`` and for fixed-length backbones.
        epsilon: ``embed`` only: amplitude bound of the learned waveform (default 1.0, full scale).
    """

    exact_neutral = True

    def __init__(
        self,
        spec: InputSpec,
        *,
        sample_rate: int,
        mode: str = "embed",
        budget: float | None = None,
        clip_seconds: float | None = None,
        epsilon: float = 1.0,
    ) -> None:
        super().__init__(spec)
        if spec.modality not in ("speech", "audio"):
            raise ValueError(
                f"WaveformProgram needs a speech/audio backbone, got {spec.modality!r}; "
                "use ImageProgram or VideoProgram"
            )
        if mode not in WAVE_MODES:
            raise ValueError(f"mode={mode!r}; use one of {WAVE_MODES}")
        self.mode, self.input_rate, self.rate = mode, int(sample_rate), int(spec.sample_rate)
        fixed = spec.shape[0] if spec.shape[0] > 0 else None
        clip = round(clip_seconds * self.rate) if clip_seconds is not None else None
        if (mode == "additive" or fixed) and clip is None:
            raise ValueError(f"WaveformProgram(mode={mode!r}) on this backbone needs clip_seconds (the clip length)")
        if mode == "embed":
            self.budget_doc = "seconds of learned universal waveform around the clip (V2S); params = samples"
            self.epsilon = float(epsilon)
            if fixed and budget is not None:
                raise ValueError(
                    f"this backbone takes exactly {fixed} samples, so the learned part is the rest of "
                    "them and budget cannot be set; leave budget unset or change clip_seconds"
                )
            learned = fixed - clip if fixed else round((1.0 if budget is None else budget) * self.rate)
            if learned < 1:
                raise ValueError(f"embed program: {learned} learned samples; raise budget or shorten clip_seconds")
            self.before = nn.Parameter(torch.zeros(learned // 2))
            self.after = nn.Parameter(torch.zeros(learned - learned // 2))
            self.budget = learned / self.rate
        else:
            self.budget_doc = "epsilon, the amplitude (L-infinity) bound of the additive waveform"
            self.epsilon = float(0.05 if budget is None else budget)
            if fixed and fixed != clip:
                raise ValueError(
                    f"additive program: backbone takes {fixed} samples but the clip has {clip}; "
                    "use mode='embed' or set clip_seconds to the backbone's length"
                )
            self.theta = nn.Parameter(torch.zeros(clip))
            self.budget = self.epsilon
        if self.epsilon <= 0:
            raise ValueError(f"WaveformProgram: epsilon={self.epsilon} must be > 0")
        self.clip_samples = clip

    def resample(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` at the data's rate -> ``(B, N')`` at the backbone's rate."""
        if wave.ndim != 2:
            raise ValueError(f"WaveformProgram expects (B, N) waveforms, got shape {tuple(wave.shape)}")
        return wave if self.rate == self.input_rate else AF.resample(wave, self.input_rate, self.rate)

    def _check_length(self, wave: torch.Tensor) -> None:
        if self.clip_samples is not None and wave.shape[-1] != self.clip_samples:
            raise ValueError(
                f"clip has {wave.shape[-1]} samples at {self.rate} Hz but the program was built for "
                f"{self.clip_samples}; crop/pad clips to clip_seconds in the data loader"
            )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Args: wave: ``(B, N)``. Returns: ``(B, N_out)`` at ``spec.sample_rate``."""
        x = self.resample(wave)
        self._check_length(x)
        if self.mode == "additive":
            return x + self.epsilon * torch.tanh(self.theta)
        B = x.shape[0]
        before = (self.epsilon * torch.tanh(self.before)).expand(B, -1)
        after = (self.epsilon * torch.tanh(self.after)).expand(B, -1)
        return torch.cat([before, x, after], dim=1)

    def plain(self, wave: torch.Tensor) -> torch.Tensor:
        """The clip at the backbone's rate, padded with silence where the program would add samples."""
        x = self.resample(wave)
        self._check_length(x)
        if self.mode == "additive":
            return x
        return F.pad(x, (self.before.numel(), self.after.numel()))

    def perturbation_norms(self) -> dict[str, float]:
        theta = self.theta if self.mode == "additive" else torch.cat([self.before, self.after])
        with torch.no_grad():
            delta = self.epsilon * torch.tanh(theta)
            return {"l2": float(delta.norm()), "linf": float(delta.abs().max())}
