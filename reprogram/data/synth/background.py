"""Recorder backgrounds and channels: pink noise, insect chorus bands, rain transients, a recorder filter.

Each recorder (the grouping variable) has its own profile: the levels of its noise sources, the centre
frequencies and pulsing of its insect bands, how often it rains there, and a channel filter (band limits
plus one resonance, as a microphone and housing would impose). Clips jitter these levels around the profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal


@dataclass(frozen=True)
class InsectBand:
    """A narrow-band stationary chorus, amplitude-modulated (pulsing)."""

    centre_hz: float
    bandwidth_hz: float
    am_rate_hz: float
    am_depth: float
    level_db: float  # relative to the pink noise


@dataclass(frozen=True)
class RecorderProfile:
    """One recorder's background and channel.

    Attributes:
        name: group value written to the manifest (``R1``...).
        insects: the recorder's insect bands.
        rain_prob: probability that a clip from this recorder contains rain.
        rain_rate_hz: drops per second when it rains.
        rain_level_db: rain level relative to the pink noise.
        highpass_hz, lowpass_hz: channel band limits (2nd-order Butterworth each side).
        resonance_hz, resonance_gain, resonance_q: a peaking resonance ``y = x + gain * bandpass(x)``.
    """

    name: str
    insects: tuple[InsectBand, ...]
    rain_prob: float
    rain_rate_hz: float
    rain_level_db: float
    highpass_hz: float
    lowpass_hz: float
    resonance_hz: float
    resonance_gain: float
    resonance_q: float


def sample_recorder(name: str, sample_rate: int, rng: np.random.Generator) -> RecorderProfile:
    """Draw one recorder's profile."""
    top = 0.45 * sample_rate
    insects = tuple(
        InsectBand(
            centre_hz=float(rng.uniform(1800.0, min(7000.0, 0.8 * top))),
            bandwidth_hz=float(rng.uniform(60.0, 400.0)),
            am_rate_hz=float(rng.uniform(2.0, 30.0)),
            am_depth=float(rng.uniform(0.3, 0.95)),
            level_db=float(rng.uniform(-4.0, 8.0)),
        )
        for _ in range(int(rng.integers(1, 4)))
    )
    return RecorderProfile(
        name=name,
        insects=insects,
        rain_prob=float(rng.uniform(0.1, 0.5)),
        rain_rate_hz=float(rng.uniform(20.0, 200.0)),
        rain_level_db=float(rng.uniform(-2.0, 8.0)),
        highpass_hz=float(rng.uniform(60.0, 250.0)),
        lowpass_hz=float(rng.uniform(min(5000.0, 0.6 * top), min(7500.0, top))),
        resonance_hz=float(rng.uniform(800.0, min(4000.0, 0.5 * top))),
        resonance_gain=float(rng.uniform(-0.5, 1.0)),
        resonance_q=float(rng.uniform(1.0, 3.0)),
    )


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS 1/f noise of ``n`` samples (white noise shaped by 1/sqrt(f) in the frequency domain)."""
    spec = np.fft.rfft(rng.standard_normal(n))  # (n//2 + 1,)
    k = np.arange(len(spec), dtype=float)
    spec[1:] /= np.sqrt(k[1:])
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x**2))


def insect_band(band: InsectBand, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS (before modulation) band-passed noise at the band's centre, pulsing at its AM rate."""
    lo = max(band.centre_hz - band.bandwidth_hz / 2, 20.0)
    hi = min(band.centre_hz + band.bandwidth_hz / 2, 0.49 * sr)
    sos = signal.butter(2, [lo, hi], btype="bandpass", fs=sr, output="sos")
    x = signal.sosfilt(sos, rng.standard_normal(n + sr // 10))[sr // 10 :]  # drop the filter's warm-up
    x /= np.sqrt(np.mean(x**2))
    t = np.arange(n) / sr
    rate = band.am_rate_hz * np.exp(0.1 * rng.standard_normal())
    am = 1 - band.am_depth * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))
    return x * am


def rain(rate_hz: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Rain-like transients: noise gated by Poisson drops with 0.5-4 ms exponential decays; (n,)."""
    drops = np.zeros(n)
    idx = rng.integers(0, n, size=rng.poisson(rate_hz * n / sr))
    np.add.at(drops, idx, rng.pareto(2.5, size=len(idx)) + 0.2)  # heavy-tailed drop sizes
    tau = rng.uniform(0.0005, 0.004)
    kernel = np.exp(-np.arange(int(8 * tau * sr) + 1) / (tau * sr))
    env = signal.fftconvolve(drops, kernel)[:n]
    x = signal.sosfilt(signal.butter(1, 500.0, btype="highpass", fs=sr, output="sos"), rng.standard_normal(n))
    return x * env


def render_background(profile: RecorderProfile, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A clip's raw background at this recorder (before the channel filter); shape (n,)."""
    db = lambda level: 10 ** (level / 20)  # noqa: E731
    bg = pink_noise(n, rng) * db(rng.uniform(-2, 2))
    for band in profile.insects:
        if rng.uniform() < 0.85:  # a band is sometimes silent
            bg += db(band.level_db + rng.uniform(-3, 3)) * insect_band(band, n, sr, rng)
    if rng.uniform() < profile.rain_prob:
        drops = rain(profile.rain_rate_hz * np.exp(0.3 * rng.standard_normal()), n, sr, rng)
        rms = np.sqrt(np.mean(drops**2))
        if rms > 0:
            bg += db(profile.rain_level_db + rng.uniform(-3, 3)) * drops / rms
    return bg


def apply_channel(profile: RecorderProfile, x: np.ndarray, sr: int) -> np.ndarray:
    """The recorder's linear channel filter along the last axis (so SNR can be set after it)."""
    sos = signal.butter(2, [profile.highpass_hz, profile.lowpass_hz], btype="bandpass", fs=sr, output="sos")
    y = signal.sosfilt(sos, x, axis=-1)
    b, a = signal.iirpeak(profile.resonance_hz, profile.resonance_q, fs=sr)
    return y + profile.resonance_gain * signal.lfilter(b, a, y, axis=-1)
