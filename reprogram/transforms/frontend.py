"""Differentiable log-mel front end: ``(B, N)`` waveform -> ``(B, n_mels, frames)`` in decibels.

The front end has no trainable parameters; gradients flow through it to anything upstream (a waveform
program) and it is the first stage of every image and video program.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio.functional as AF
from torch import nn
from torchaudio.transforms import MelSpectrogram


@dataclass(frozen=True)
class LogMelConfig:
    """Log-mel settings.

    Args:
        sample_rate: rate the front end analyses at, in Hz. ``None`` means "the data's rate": no resampling.
            When set and different from the data's rate, the waveform is resampled first.
        win_ms: analysis window length in milliseconds (FFT size is the next power of two).
        hop_ms: hop between frames in milliseconds.
        n_mels: number of mel bands.
        f_min: lowest band edge in Hz.
        f_max: highest band edge in Hz; ``None`` means the Nyquist frequency.
        top_db: dynamic range kept below the reference level, in dB (used to scale to ``[0, 1]``).
        ref_db: the reference level (maps to 1) in dB. ``None``: each clip's own maximum (per-clip gain
            normalisation, as ``librosa.power_to_db(ref=np.max)``; loudness is not a cue). A number: a fixed
            level for every clip (absolute loudness is kept, e.g. to study it as a cue or a leak).
    """

    sample_rate: int | None = None
    win_ms: float = 32.0
    hop_ms: float = 10.0
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    top_db: float = 80.0
    ref_db: float | None = None

    def __post_init__(self) -> None:
        if self.win_ms <= 0 or self.hop_ms <= 0:
            raise ValueError(f"LogMelConfig: win_ms={self.win_ms} and hop_ms={self.hop_ms} must be > 0")
        if self.n_mels < 1:
            raise ValueError(f"LogMelConfig.n_mels={self.n_mels}; use at least 1 mel band")
        if self.f_max is not None and self.f_max <= self.f_min:
            raise ValueError(f"LogMelConfig: f_max={self.f_max} must exceed f_min={self.f_min}")
        if self.top_db <= 0:
            raise ValueError(f"LogMelConfig.top_db={self.top_db} must be > 0 (e.g. 80)")


class LogMel(nn.Module):
    """Log-mel spectrogram in dB, resampling only when the data's rate differs from the analysis rate.

    Args:
        config: the :class:`LogMelConfig`.
        sample_rate: the data's (input waveform's) rate in Hz.
    """

    def __init__(self, config: LogMelConfig, sample_rate: int) -> None:
        super().__init__()
        if sample_rate <= 0:
            raise ValueError(f"LogMel: sample_rate={sample_rate} must be a positive rate in Hz")
        self.config = config
        self.input_rate = int(sample_rate)
        self.rate = int(config.sample_rate or sample_rate)
        nyquist = self.rate / 2
        self.f_max = float(config.f_max if config.f_max is not None else nyquist)
        if self.f_max > nyquist:
            raise ValueError(
                f"LogMel: f_max={self.f_max} Hz is above the Nyquist frequency {nyquist} Hz of the analysis rate "
                f"{self.rate} Hz; lower f_max or raise LogMelConfig.sample_rate"
            )
        win = max(2, round(config.win_ms * self.rate / 1000))
        self.hop = max(1, round(config.hop_ms * self.rate / 1000))
        n_fft = 2 ** math.ceil(math.log2(win))
        self.mel = MelSpectrogram(
            sample_rate=self.rate,
            n_fft=n_fft,
            win_length=win,
            hop_length=self.hop,
            f_min=config.f_min,
            f_max=self.f_max,
            n_mels=config.n_mels,
            power=2.0,
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Args: wave: ``(B, N)`` at the data's rate. Returns: ``(B, n_mels, frames)`` power in dB."""
        if wave.ndim != 2:
            raise ValueError(f"LogMel expects (B, N) waveforms, got shape {tuple(wave.shape)}")
        # The front end runs in float32 even under autocast: a bf16 mel would lose the dB scale's low end and
        # the image resize after it has no bf16 CPU kernel. Only the backbone runs in reduced precision.
        with torch.autocast(device_type=wave.device.type, enabled=False):
            wave = wave.float()
            if self.rate != self.input_rate:
                wave = AF.resample(wave, self.input_rate, self.rate)
            power = self.mel(wave)  # (B, n_mels, frames)
            return 10.0 * torch.log10(power.clamp_min(1e-10))

    def scaled(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel mapped to ``[0, 1]``: the reference level (each clip's maximum, or ``ref_db``) -> 1,
        ``top_db`` below it -> 0.

        Returns: ``(B, n_mels, frames)``.
        """
        db = self(wave)  # (B, n_mels, frames)
        if self.config.ref_db is None:
            top = db.amax(dim=(1, 2), keepdim=True)
        else:
            top = torch.full_like(db[:, :1, :1], self.config.ref_db)
        floor = top - self.config.top_db
        return ((torch.maximum(db, floor) - floor) / self.config.top_db).clamp(0.0, 1.0)

    def mel_fraction(self, hz: float) -> float:
        """Position of ``hz`` on this front end's mel axis, 0 at ``f_min`` and 1 at ``f_max``."""
        lo, hi = _hz_to_mel(self.config.f_min), _hz_to_mel(self.f_max)
        return (_hz_to_mel(hz) - lo) / (hi - lo)


# Slaney mel scale (linear below 1 kHz, logarithmic above), the scale the filterbank uses.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: float) -> float:
    return hz / _F_SP if hz < _MIN_LOG_HZ else _MIN_LOG_MEL + math.log(hz / _MIN_LOG_HZ) / _LOGSTEP


def _mel_to_hz(mel: float) -> float:
    return mel * _F_SP if mel < _MIN_LOG_MEL else _MIN_LOG_HZ * math.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
