"""Every knob of the synthetic gibbon corpus, in one frozen dataclass whose hash names the cache folder."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

#: Bump when the generator's output for a given config changes, so cached corpora are regenerated.
GENERATOR_VERSION = "3"


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic gibbon corpus (deterministic by ``seed``).

    Defaults: 8 mated pairs (female caller IDs F01..F08, their males M01..M08) heard by 4 recorders; per
    pair 6 female great calls, 3 duets and 3 male phrase clips, plus 6 background-only clips per recorder:
    120 clips of 5 s at 16 kHz (10 min of audio, a few seconds to generate). That gives the four-class call-type
    task, an 8-way caller-ID task with 9 calls per female (enough for stratified 5-fold) and a presence task
    (96 gibbon vs 24 background clips), small enough to train reprogramming demos on 2 CPU cores.

    Attributes:
        seed: master seed; every random draw derives from it (same seed, same bytes).
        sample_rate: output sample rate in Hz.
        clip_s: clip length in seconds (a great call of the default population lasts 1.5-3.7 s).
        n_individuals: number of mated pairs; each pair has one female (caller-ID class) and one male.
        n_recorders: number of recorders (groups); each has its own background and channel filter.
        female_calls_per_individual: female-only great-call clips per female.
        duets_per_individual: duet clips per pair (great call overlapped with male phrases).
        male_calls_per_individual: male-only phrase clips per male.
        noise_clips_per_recorder: background-only clips per recorder (call type ``noise``, presence ``none``).
        home_recorder_fraction: share of each pair's clips (per call type, rounded) recorded at the pair's home
            recorder; the rest are heard by the neighbouring recorder. Recorder is then partly, not fully,
            informative of the caller (as for territorial gibbons), and every caller is heard by two recorders,
            so caller ID can also be tested across recorders (leave-one-recorder-out).
        snr_db: mean signal-to-background ratio in dB, measured after the recorder's filter over the call's
            extent (first to last sample of the gibbon signal).
        snr_jitter_db: per-clip SNR is drawn uniformly from ``snr_db +- snr_jitter_db``.
        individual_spread: scale of between-individual differences (1.0: individuals span the whole
            population range of every signature parameter; 0.0: all females identical).
        call_jitter: within-individual, per-call variation of every signature parameter (log-normal sigma).
        note_jitter: per-note variation of frequency, duration and timing within one call (log-normal sigma).
        female_f_low_hz: population range of a female's lowest fundamental (start of her first note).
        female_f_high_hz: population range of a female's highest fundamental (end of her climax note).
        male_f_hz: population range of a male's base fundamental.
        male_to_female_db: mean level of the male relative to the female in duets (dB, +-3 dB per clip).
        distractor_rate_hz: mean rate of non-gibbon bird chirps (2-5 kHz) in every clip, part of the background.
        level_dbfs: mean RMS level of a written clip in dBFS (+-``level_jitter_db`` per clip; peaks kept < 1).
        level_jitter_db: per-clip level jitter, so loudness is not a cue.
        audio_format: ``"flac"`` (16-bit) or ``"wav"`` (16-bit PCM).
    """

    seed: int = 0
    sample_rate: int = 16000
    clip_s: float = 5.0
    n_individuals: int = 8
    n_recorders: int = 4
    female_calls_per_individual: int = 6
    duets_per_individual: int = 3
    male_calls_per_individual: int = 3
    noise_clips_per_recorder: int = 6
    home_recorder_fraction: float = 2 / 3
    snr_db: float = 0.0
    snr_jitter_db: float = 4.0
    individual_spread: float = 1.0
    call_jitter: float = 0.06
    note_jitter: float = 0.03
    female_f_low_hz: tuple[float, float] = (500.0, 750.0)
    female_f_high_hz: tuple[float, float] = (1100.0, 1600.0)
    male_f_hz: tuple[float, float] = (250.0, 480.0)
    male_to_female_db: float = -3.0
    distractor_rate_hz: float = 0.4
    level_dbfs: float = -26.0
    level_jitter_db: float = 6.0
    audio_format: str = "flac"

    def __post_init__(self) -> None:
        for key in ("female_f_low_hz", "female_f_high_hz", "male_f_hz"):  # lists from YAML/JSON -> tuples
            value = getattr(self, key)
            if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
                object.__setattr__(self, key, tuple(float(v) for v in value))

        def need(ok: bool, key: str, fix: str) -> None:
            if not ok:
                raise ValueError(f"SyntheticConfig.{key}={getattr(self, key)!r} is invalid: {fix}")

        for key in ("n_individuals", "n_recorders", "sample_rate"):
            need(isinstance(getattr(self, key), int) and getattr(self, key) >= 1, key, "use an integer >= 1")
        for key in (
            "female_calls_per_individual",
            "duets_per_individual",
            "male_calls_per_individual",
            "noise_clips_per_recorder",
        ):
            need(isinstance(getattr(self, key), int) and getattr(self, key) >= 0, key, "use an integer >= 0")
        need(
            self.female_calls_per_individual + self.duets_per_individual >= 1,
            "female_calls_per_individual",
            "give each female at least one great call (female or duet clip) so caller ID has examples",
        )
        need(self.sample_rate >= 8000, "sample_rate", "use at least 8000 Hz (harmonics reach 4 kHz)")
        need(self.clip_s >= 4.0, "clip_s", "use clips of at least 4.0 s so a whole great call fits")
        need(0.0 <= self.home_recorder_fraction <= 1.0, "home_recorder_fraction", "use a share in [0, 1]")
        for key in ("snr_jitter_db", "individual_spread", "call_jitter", "note_jitter", "distractor_rate_hz"):
            need(math.isfinite(getattr(self, key)) and getattr(self, key) >= 0, key, "use a finite value >= 0")
        for key in ("snr_db", "male_to_female_db", "level_dbfs", "level_jitter_db"):
            need(math.isfinite(getattr(self, key)), key, "use a finite number of dB")
        need(self.call_jitter <= 0.5, "call_jitter", "use a log-normal sigma <= 0.5 (0.06 is the default)")
        need(self.note_jitter <= 0.5, "note_jitter", "use a log-normal sigma <= 0.5 (0.03 is the default)")
        need(self.level_dbfs + self.level_jitter_db <= -6.0, "level_dbfs", "keep level_dbfs + level_jitter_db <= -6")
        nyquist = self.sample_rate / 2
        for key in ("female_f_low_hz", "female_f_high_hz", "male_f_hz"):
            lo_hi = getattr(self, key)
            need(
                isinstance(lo_hi, tuple)
                and len(lo_hi) == 2
                and all(isinstance(v, float) and math.isfinite(v) for v in lo_hi)
                and 50.0 <= lo_hi[0] <= lo_hi[1] < nyquist / 2,
                key,
                f"give a (low, high) pair of Hz with 50 <= low <= high < {nyquist / 2:g} (a quarter of the rate)",
            )
        need(
            self.female_f_low_hz[1] < self.female_f_high_hz[0],
            "female_f_low_hz",
            "keep the upper end of female_f_low_hz below the lower end of female_f_high_hz (notes rise)",
        )
        need(self.audio_format in ("flac", "wav"), "audio_format", "use 'flac' or 'wav'")

    @classmethod
    def from_dict(cls, options: dict) -> SyntheticConfig:
        """Build a config from a mapping (e.g. an experiment's ``data.synthetic``), naming unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise KeyError(f"unknown SyntheticConfig key(s) {unknown}; valid keys are {sorted(known)}")
        return cls(**options)

    def to_dict(self) -> dict:
        """All fields as plain JSON-able values."""
        return json.loads(json.dumps(asdict(self)))

    def cache_key(self) -> str:
        """A short hash of the FULL config plus the generator version (names the cache folder)."""
        blob = json.dumps({"config": self.to_dict(), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
