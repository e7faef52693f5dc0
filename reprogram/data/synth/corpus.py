"""Plan, render and write the synthetic corpus; cache it under a hash of the full config.

Layout of a generated corpus folder::

    manifest.csv      every clip: path,call_type,individual,presence,recorder,pair,snr_db,event_start_s,...
    caller_id.csv     the caller-ID view (female and duet clips only; same columns)
    truth.json        the config, generator version, every individual's signature and recorder profile
    audio/clip_0000.flac ...

Paths in the CSVs are relative to the folder. ``individual`` is the female's ID (``F01``) on female and duet
clips, the male's ID (``M01``) on male clips and ``none`` on background clips; ``pair`` names the mated pair.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from reprogram.data.synth import background as bgm
from reprogram.data.synth import calls
from reprogram.data.synth.config import GENERATOR_VERSION, SyntheticConfig

CALL_TYPES = ("female", "male", "duet", "noise")
COLUMNS = (
    "path",
    "call_type",
    "individual",
    "presence",
    "recorder",
    "pair",
    "snr_db",
    "event_start_s",
    "event_end_s",
    "duration_s",
    "sample_rate",
)


@dataclass(frozen=True)
class ClipPlan:
    """What one clip contains (drawn before any audio is rendered)."""

    index: int
    call_type: str
    pair: int | None  # index of the mated pair (None for background clips)
    recorder: int


@dataclass(frozen=True)
class CorpusPlan:
    """The population (signatures, recorders) and the list of clips of one config."""

    config: SyntheticConfig
    females: tuple[calls.FemaleSignature, ...]
    males: tuple[calls.MaleSignature, ...]
    recorders: tuple[bgm.RecorderProfile, ...]
    clips: tuple[ClipPlan, ...]


@dataclass(frozen=True)
class SyntheticClip:
    """A rendered clip: its components after the recorder channel and level, and its manifest row.

    Attributes:
        mixture: what is written, ``signal + background``; shape (N,), float64.
        signal: the gibbon part (zeros for background clips); shape (N,).
        background: the recorder background including distractors; shape (N,).
        row: the manifest row (without ``path``).
    """

    mixture: np.ndarray
    signal: np.ndarray
    background: np.ndarray
    row: dict


def _rng(config: SyntheticConfig, *key: int) -> np.random.Generator:
    """An independent stream per purpose/clip, so one clip's draws never depend on another's."""
    return np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=key))


def plan_corpus(config: SyntheticConfig) -> CorpusPlan:
    """Draw the population and the clip list of ``config``."""
    pop = _rng(config, 0)
    females = tuple(calls.sample_female(config, pop) for _ in range(config.n_individuals))
    males = tuple(calls.sample_male(config, pop) for _ in range(config.n_individuals))
    recorders = tuple(
        bgm.sample_recorder(f"R{r + 1}", config.sample_rate, _rng(config, 1, r)) for r in range(config.n_recorders)
    )
    clips: list[ClipPlan] = []
    per_pair = [
        ("female", config.female_calls_per_individual),
        ("duet", config.duets_per_individual),
        ("male", config.male_calls_per_individual),
    ]
    for pair in range(config.n_individuals):
        home = pair % config.n_recorders  # pairs spread over recorders; each recorder hears several pairs
        neighbour = (home + 1) % config.n_recorders
        for call_type, count in per_pair:
            n_home = int(np.floor(config.home_recorder_fraction * count + 0.5))  # exact shares, no draw
            for k in range(count):
                clips.append(ClipPlan(len(clips), call_type, pair, home if k < n_home else neighbour))
    for r in range(config.n_recorders):
        for _ in range(config.noise_clips_per_recorder):
            clips.append(ClipPlan(len(clips), "noise", None, r))
    assert [c.index for c in clips] == list(range(len(clips)))
    return CorpusPlan(config, females, males, recorders, tuple(clips))


def _active_rms(x: np.ndarray) -> float:
    active = x[x != 0]
    return float(np.sqrt(np.mean(active**2))) if active.size else 0.0


def _male_clip(sig: calls.MaleSignature, start_s: float, n: int, cfg: SyntheticConfig, rng) -> np.ndarray:
    """Male phrases from ``start_s`` until the clip is full (0.3-1.0 s between phrases); (n,)."""
    out, t = np.zeros(n), start_s
    while t < cfg.clip_s - 0.6:
        phrase, t = calls.render_male_phrase(sig, t, n, cfg.sample_rate, cfg.note_jitter, rng)
        out += phrase
        t += rng.uniform(0.3, 1.0)
    return out


def _gibbon_signal(plan: CorpusPlan, clip: ClipPlan, n: int, rng: np.random.Generator) -> np.ndarray:
    """The clean gibbon signal of a clip, before the channel; (n,)."""
    cfg, sr = plan.config, plan.config.sample_rate
    if clip.call_type == "male":
        return _male_clip(calls.jitter(plan.males[clip.pair], cfg.call_jitter, rng), rng.uniform(0.1, 0.8), n, cfg, rng)
    sig = calls.jitter(plan.females[clip.pair], cfg.call_jitter, rng)
    dur = calls.great_call_duration(sig)
    onset = rng.uniform(0.1, max(0.1, cfg.clip_s - dur - 0.2))
    female = calls.render_great_call(sig, onset, n, sr, cfg.note_jitter, rng)
    if clip.call_type == "female":
        return female
    # duet: one male phrase starting inside the great call (overlap), then phrases after it (the male coda)
    msig = calls.jitter(plan.males[clip.pair], cfg.call_jitter, rng)
    male, end = calls.render_male_phrase(msig, onset + rng.uniform(0.0, 0.6) * dur, n, sr, cfg.note_jitter, rng)
    male += _male_clip(msig, max(end, onset + dur) + rng.uniform(0.1, 0.4), n, cfg, rng)
    gain = 10 ** ((cfg.male_to_female_db + rng.uniform(-3, 3)) / 20) * _active_rms(female) / _active_rms(male)
    return female + gain * male


def render_clip(plan: CorpusPlan, index: int) -> SyntheticClip:
    """Render clip ``index`` of ``plan`` (deterministic: depends only on the config and the index)."""
    cfg, clip = plan.config, plan.clips[index]
    sr, n = cfg.sample_rate, int(round(cfg.clip_s * cfg.sample_rate))
    rng = _rng(cfg, 3, index)
    profile = plan.recorders[clip.recorder]
    raw_signal = np.zeros(n) if clip.call_type == "noise" else _gibbon_signal(plan, clip, n, rng)
    raw_bg = bgm.render_background(profile, n, sr, rng)
    raw_bg += 10 ** (rng.uniform(-6, 6) / 20) * calls.render_chirps(cfg.distractor_rate_hz, n, sr, rng)
    sig, bg = bgm.apply_channel(profile, np.stack([raw_signal, raw_bg]), sr)  # (2, n) -> two (n,)
    row = {"snr_db": "", "event_start_s": "", "event_end_s": ""}
    if clip.call_type != "noise":
        active = np.flatnonzero(raw_signal)
        a, b = int(active[0]), int(active[-1]) + 1
        snr_db = cfg.snr_db + rng.uniform(-cfg.snr_jitter_db, cfg.snr_jitter_db)
        sig *= np.sqrt(np.mean(bg[a:b] ** 2) / np.mean(sig[a:b] ** 2) * 10 ** (snr_db / 10))
        row = {"snr_db": f"{snr_db:.3f}", "event_start_s": f"{a / sr:.4f}", "event_end_s": f"{b / sr:.4f}"}
    mix = sig + bg
    gain = 10 ** ((cfg.level_dbfs + rng.uniform(-cfg.level_jitter_db, cfg.level_jitter_db)) / 20)
    gain = min(gain / np.sqrt(np.mean(mix**2)), 0.98 / np.abs(mix).max())
    pair = None if clip.pair is None else clip.pair + 1
    individual = "none" if pair is None else f"{'M' if clip.call_type == 'male' else 'F'}{pair:02d}"
    row = {
        "call_type": clip.call_type,
        "individual": individual,
        "presence": "none" if clip.call_type == "noise" else "gibbon",
        "recorder": profile.name,
        "pair": "none" if pair is None else f"P{pair:02d}",
        **row,
        "duration_s": f"{n / sr:.3f}",
        "sample_rate": str(sr),
    }
    return SyntheticClip(gain * mix, gain * sig, gain * bg, row)


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def generate_corpus(out_dir: str | Path, config: SyntheticConfig | None = None) -> Path:
    """Render every clip of ``config`` into ``out_dir`` and write the manifests; returns ``manifest.csv``.

    Args:
        out_dir: folder to create (it must not exist or be empty).
        config: the corpus parameters (default ``SyntheticConfig()``).

    Returns:
        Path of ``out_dir/manifest.csv`` (every clip); ``out_dir/caller_id.csv`` is the caller-ID view.
    """
    config = SyntheticConfig() if config is None else config
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; give a new folder or use ensure_corpus()")
    (out / "audio").mkdir(parents=True, exist_ok=True)
    plan = plan_corpus(config)
    rows = []
    for clip in plan.clips:
        rendered = render_clip(plan, clip.index)
        rel = f"audio/clip_{clip.index:04d}.{config.audio_format}"
        fmt = "FLAC" if config.audio_format == "flac" else "WAV"
        sf.write(out / rel, rendered.mixture.astype(np.float32), config.sample_rate, subtype="PCM_16", format=fmt)
        rows.append({"path": rel, **rendered.row})
    _write_csv(out / "caller_id.csv", [r for r in rows if r["call_type"] in ("female", "duet")])
    truth = {
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "females": {f"F{i + 1:02d}": asdict(s) for i, s in enumerate(plan.females)},
        "males": {f"M{i + 1:02d}": asdict(s) for i, s in enumerate(plan.males)},
        "recorders": [asdict(r) for r in plan.recorders],
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    _write_csv(out / "manifest.csv", rows)  # written last: its presence marks a complete corpus
    return out / "manifest.csv"
