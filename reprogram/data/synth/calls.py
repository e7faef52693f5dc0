"""Gibbon vocalisations: female great calls and male phrases from per-individual signatures.

A female great call (after Hylobates, e.g. H. funereus) is a sequence of rising frequency-modulated notes:
the inter-onset interval shrinks geometrically (the call accelerates), each note sweeps upward and later
notes sweep higher, towards a climax. Male phrases are shorter, lower, more modulated figures built from
"boom" notes (short, low, falling) and "wa" notes (rise-fall arcs with a fast frequency trill).

Each individual owns a signature (a point in a log-parameter space); every call draws its parameters from
a log-normal jitter around that point, and every note adds a smaller jitter. Notes are synthesised whole
(vectorised over samples and harmonics); the only Python loops are over notes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from reprogram.data.synth.config import SyntheticConfig

#: Population ranges (low, high) of the female signature parameters other than the frequencies in the config.
FEMALE_RANGES: dict[str, tuple[float, float]] = {
    "note_dur": (0.12, 0.24),  # s, duration of the first note
    "ioi0": (0.32, 0.48),  # s, first inter-onset interval
    "rate_gain": (0.35, 0.65),  # last interval / first interval (acceleration)
    "n_notes": (6.5, 10.5),  # notes per great call (rounded per call)
    "harmonic_decay": (0.15, 0.7),  # amplitude ratio of harmonic h+1 to h
    "sweep_shape": (0.5, 2.0),  # exponent of the within-note frequency trajectory
    "attack": (0.15, 0.5),  # fraction of a note spent rising to its peak
}
MALE_RANGES: dict[str, tuple[float, float]] = {
    "note_dur": (0.12, 0.28),  # s
    "wa_peak": (1.3, 1.9),  # peak / base frequency of a "wa" arc
    "fm_rate": (6.0, 18.0),  # Hz, trill rate on "wa" notes
    "fm_depth": (0.04, 0.14),  # relative trill depth
    "notes_per_phrase": (2.5, 5.5),
    "note_gap": (0.06, 0.2),  # s between notes of a phrase
    "harmonic_decay": (0.35, 0.8),
    "boom_prob": (0.15, 0.5),  # fraction of "boom" notes
}
N_HARMONICS = 4


@dataclass(frozen=True)
class FemaleSignature:
    """One female's great-call parameters (the caller-ID signal). Units as in :data:`FEMALE_RANGES`."""

    f_low: float
    f_high: float
    note_dur: float
    ioi0: float
    rate_gain: float
    n_notes: float
    harmonic_decay: float
    sweep_shape: float
    attack: float

    def vector(self) -> np.ndarray:
        """Log-parameters, shape (P,): the space in which individuals and jitter are compared."""
        return np.log([getattr(self, f.name) for f in fields(self)])


@dataclass(frozen=True)
class MaleSignature:
    """One male's phrase parameters. Units as in :data:`MALE_RANGES`; ``f_base`` in Hz."""

    f_base: float
    note_dur: float
    wa_peak: float
    fm_rate: float
    fm_depth: float
    notes_per_phrase: float
    note_gap: float
    harmonic_decay: float
    boom_prob: float

    def vector(self) -> np.ndarray:
        return np.log([getattr(self, f.name) for f in fields(self)])


def _draw(lo: float, hi: float, spread: float, rng: np.random.Generator) -> float:
    """Log-uniform draw around the geometric centre of [lo, hi], the range scaled by ``spread``."""
    u = rng.uniform(-0.5, 0.5)
    return float(np.sqrt(lo * hi) * (hi / lo) ** (spread * u))


def sample_female(config: SyntheticConfig, rng: np.random.Generator) -> FemaleSignature:
    """Draw one female's signature from the population."""
    s = config.individual_spread
    ranges = {"f_low": config.female_f_low_hz, "f_high": config.female_f_high_hz, **FEMALE_RANGES}
    return FemaleSignature(**{k: _draw(lo, hi, s, rng) for k, (lo, hi) in ranges.items()})


def sample_male(config: SyntheticConfig, rng: np.random.Generator) -> MaleSignature:
    """Draw one male's signature from the population."""
    s = config.individual_spread
    ranges = {"f_base": config.male_f_hz, **MALE_RANGES}
    return MaleSignature(**{k: _draw(lo, hi, s, rng) for k, (lo, hi) in ranges.items()})


def jitter(signature, sigma: float, rng: np.random.Generator):
    """Per-call variant of a signature: every parameter times ``exp(sigma * N(0, 1))``."""
    names = [f.name for f in fields(signature)]
    z = rng.standard_normal(len(names))
    return replace(signature, **{k: getattr(signature, k) * np.exp(sigma * zk) for k, zk in zip(names, z, strict=True)})


def _tone(freq: np.ndarray, env: np.ndarray, decay: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Harmonic tone following an instantaneous fundamental ``freq`` (N,) under envelope ``env`` (N,)."""
    phase = 2 * np.pi * np.cumsum(freq) / sr + rng.uniform(0, 2 * np.pi)  # (N,)
    h = np.arange(1, N_HARMONICS + 1)[:, None]  # (H, 1)
    amp = decay ** (h - 1.0) * (h * freq.max() < 0.45 * sr)  # (H, 1), harmonics above 0.45 sr dropped
    return env * (amp * np.sin(h * phase)).sum(axis=0) / amp.sum()  # (N,)


def _envelope(n: int, attack: float) -> np.ndarray:
    """Raised-cosine rise over ``attack`` of the note, raised-cosine fall over the rest; shape (n,)."""
    x = np.linspace(0.0, 1.0, n, endpoint=False) + 0.5 / n
    a = min(max(attack, 0.02), 0.98)
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip(x / a, 0, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((x - a) / (1 - a), 0, 1))
    return np.where(x < a, rise, fall)


def _add(buf: np.ndarray, note: np.ndarray, start: int) -> None:
    """Add ``note`` into ``buf`` at sample ``start``, dropping what falls outside."""
    end = min(start + len(note), len(buf))
    if start < end:
        buf[start:end] += note[: end - start]


def great_call_duration(sig: FemaleSignature) -> float:
    """Length in seconds of a great call with these parameters (before per-note jitter)."""
    n = max(3, round(sig.n_notes))
    iois = sig.ioi0 * sig.rate_gain ** (np.arange(n - 1) / (n - 2))
    return float(iois.sum() + sig.note_dur * 0.65)


def render_great_call(
    sig: FemaleSignature, onset_s: float, n_samples: int, sr: int, note_jitter: float, rng: np.random.Generator
) -> np.ndarray:
    """A female great call starting at ``onset_s`` in a buffer of ``n_samples``; returns (n_samples,) float64."""
    buf = np.zeros(n_samples)
    n = max(3, round(sig.n_notes))
    p = np.arange(n) / (n - 1)  # progress through the call, 0..1
    z = lambda: np.exp(note_jitter * rng.standard_normal(n))  # noqa: E731
    ioi = sig.ioi0 * sig.rate_gain ** (np.minimum(np.arange(n), n - 2) / (n - 2)) * z()  # (n,)
    onsets = onset_s + np.concatenate([[0.0], np.cumsum(ioi[:-1])])
    durs = np.minimum(sig.note_dur * (1 - 0.35 * p) * z(), 0.85 * ioi)
    ratio = sig.f_high / sig.f_low
    f_start = sig.f_low * ratio ** (0.25 * p) * z()
    f_end = sig.f_low * ratio ** (0.35 + 0.65 * p) * z()
    amps = 0.55 + 0.45 * p
    for k in range(n):
        m = max(int(durs[k] * sr), 8)
        x = np.arange(m) / m
        freq = f_start[k] + (f_end[k] - f_start[k]) * x**sig.sweep_shape  # (m,)
        note = amps[k] * _tone(freq, _envelope(m, sig.attack), sig.harmonic_decay, sr, rng)
        _add(buf, note, int(round(onsets[k] * sr)))
    return buf


def render_male_phrase(
    sig: MaleSignature, onset_s: float, n_samples: int, sr: int, note_jitter: float, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """One male phrase starting at ``onset_s``; returns ((n_samples,) float64, phrase end in s)."""
    buf = np.zeros(n_samples)
    n = max(2, round(sig.notes_per_phrase * np.exp(0.15 * rng.standard_normal())))
    t = onset_s
    for _ in range(n):
        boom = rng.uniform() < sig.boom_prob
        dur = sig.note_dur * (0.6 if boom else 1.0) * np.exp(note_jitter * rng.standard_normal())
        m = max(int(dur * sr), 8)
        x = np.arange(m) / m
        f0 = sig.f_base * np.exp(note_jitter * rng.standard_normal())
        if boom:  # short, low, falling
            freq = f0 * (1.1 - 0.35 * x)
            env = _envelope(m, 0.1)
        else:  # rise-fall arc with a trill
            trill = 1 + sig.fm_depth * np.sin(2 * np.pi * sig.fm_rate * x * dur + rng.uniform(0, 2 * np.pi))
            freq = f0 * (1 + (sig.wa_peak - 1) * np.sin(np.pi * x)) * trill
            env = _envelope(m, 0.4)
        _add(buf, _tone(freq, env, sig.harmonic_decay, sr, rng), int(round(t * sr)))
        t += dur + sig.note_gap * np.exp(note_jitter * rng.standard_normal())
    return buf, t


def render_chirps(rate_hz: float, n_samples: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Non-gibbon distractors: Poisson-timed bird chirps (2-5 kHz sweeps, 40-150 ms); (n_samples,)."""
    buf = np.zeros(n_samples)
    for _ in range(rng.poisson(rate_hz * n_samples / sr)):
        m = int(rng.uniform(0.04, 0.15) * sr)
        f_a, f_b = rng.uniform(2000, min(5000, 0.22 * sr), size=2)
        freq = f_a + (f_b - f_a) * np.arange(m) / m
        chirp = rng.uniform(0.2, 1.0) * _tone(freq, _envelope(m, 0.3), 0.3, sr, rng)
        _add(buf, chirp, int(rng.integers(0, max(1, n_samples - m))))
    return buf
