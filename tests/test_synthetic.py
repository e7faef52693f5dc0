"""The synthetic gibbon corpus: determinism, SNR control, manifest layout, signatures, cache, validation."""

from __future__ import annotations

import csv
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from reprogram.data.loaders import load_table
from reprogram.data.synth.calls import jitter, render_great_call, render_male_phrase
from reprogram.data.synthetic import (
    COLUMNS,
    SYNTHETIC_TASKS,
    SyntheticConfig,
    ensure_corpus,
    generate_corpus,
    plan_corpus,
    render_clip,
    task_manifest,
)

SMALL = SyntheticConfig(
    seed=3,
    clip_s=4.0,
    n_individuals=3,
    n_recorders=2,
    female_calls_per_individual=2,
    duets_per_individual=1,
    male_calls_per_individual=1,
    noise_clips_per_recorder=2,
)


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


def _snr_db(signal: np.ndarray, background: np.ndarray, start_s: float, end_s: float, sr: int) -> float:
    a, b = int(round(start_s * sr)), int(round(end_s * sr))
    return float(10 * np.log10(np.mean(signal[a:b] ** 2) / np.mean(background[a:b] ** 2)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return generate_corpus(tmp_path_factory.mktemp("synth") / "a", SMALL)


def test_same_seed_same_bytes_other_seed_other_audio(corpus, tmp_path):
    again = generate_corpus(tmp_path / "b", SMALL)
    other = generate_corpus(tmp_path / "c", SyntheticConfig(**{**SMALL.to_dict(), "seed": 4}))
    assert corpus.read_bytes() == again.read_bytes()
    rows = _rows(corpus)
    for row in rows:
        assert (corpus.parent / row["path"]).read_bytes() == (again.parent / row["path"]).read_bytes()
    a = sf.read(corpus.parent / rows[0]["path"])[0]
    b = sf.read(other.parent / rows[0]["path"])[0]
    assert a.shape == b.shape and not np.allclose(a, b)
    # a clip depends only on (config, index), not on which other clips were rendered
    plan = plan_corpus(SMALL)
    np.testing.assert_array_equal(render_clip(plan, 5).mixture, render_clip(plan_corpus(SMALL), 5).mixture)


def test_manifest_columns_and_counts(corpus):
    rows = _rows(corpus)
    assert tuple(rows[0]) == COLUMNS
    assert len({r["path"] for r in rows}) == len(rows)
    hashes = {(corpus.parent / r["path"]).read_bytes() for r in rows}
    assert len(hashes) == len(rows)  # every clip is its own audio
    per_type = Counter(r["call_type"] for r in rows)
    assert per_type == {"female": 6, "duet": 3, "male": 3, "noise": 4}
    assert {r["presence"] for r in rows if r["call_type"] == "noise"} == {"none"}
    assert {r["presence"] for r in rows if r["call_type"] != "noise"} == {"gibbon"}
    assert {r["recorder"] for r in rows} == {"R1", "R2"}
    assert Counter(r["recorder"] for r in rows if r["call_type"] == "noise") == {"R1": 2, "R2": 2}
    callers = Counter(r["individual"] for r in rows if r["call_type"] in ("female", "duet"))
    assert callers == {"F01": 3, "F02": 3, "F03": 3}
    assert {r["individual"] for r in rows if r["call_type"] == "male"} == {"M01", "M02", "M03"}
    for r in rows:
        info = sf.info(corpus.parent / r["path"])
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 64000)
    at = {(r["individual"], r["recorder"]) for r in rows if r["call_type"] in ("female", "duet")}
    assert at == {("F01", "R1"), ("F01", "R2"), ("F02", "R2"), ("F02", "R1"), ("F03", "R1"), ("F03", "R2")}
    home = Counter(r["recorder"] for r in rows if r["individual"] == "F01" and r["call_type"] == "female")
    assert home == {"R1": 1, "R2": 1}  # round(2/3 * 2) = 1 of 2 female calls at home
    view = _rows(task_manifest(corpus, "caller_id"))
    assert [r["path"] for r in view] == [r["path"] for r in rows if r["call_type"] in ("female", "duet")]


def test_tasks_load_through_the_data_layer(corpus):
    for name, task in SYNTHETIC_TASKS.items():
        table = load_table(
            task_manifest(corpus, name), label_column=task.label_column, group_columns=task.group_columns
        )
        assert len(table) == (9 if name.startswith("caller_id") else 16)
        assert Path(table[0].path).is_file()
    with pytest.raises(KeyError, match="caller_id"):
        task_manifest(corpus, "species")


@pytest.mark.parametrize("snr_db", [-6.0, 0.0, 9.0])
def test_requested_snr_is_achieved(snr_db):
    config = SyntheticConfig(**{**SMALL.to_dict(), "snr_db": snr_db, "snr_jitter_db": 0.0})
    plan = plan_corpus(config)
    for index, call_type in ((0, "female"), (2, "duet"), (3, "male")):
        clip = render_clip(plan, index)
        assert clip.row["call_type"] == call_type
        np.testing.assert_allclose(clip.mixture, clip.signal + clip.background)
        start, end = float(clip.row["event_start_s"]), float(clip.row["event_end_s"])
        assert 0 <= start < end <= config.clip_s
        assert abs(_snr_db(clip.signal, clip.background, start, end, 16000) - snr_db) < 0.05


def test_snr_jitter_stays_in_range_and_file_holds_the_mixture(corpus):
    plan = plan_corpus(SMALL)
    rows = _rows(corpus)
    snrs = [float(r["snr_db"]) for r in rows if r["snr_db"]]
    assert all(abs(s - SMALL.snr_db) <= SMALL.snr_jitter_db for s in snrs) and np.std(snrs) > 0.5
    for i in (0, 4, len(rows) - 1):
        clip = render_clip(plan, i)
        wave = sf.read(corpus.parent / rows[i]["path"])[0]
        assert np.abs(wave - clip.mixture).max() < 2 / 2**15  # 16-bit quantisation only
        assert np.abs(wave).max() < 1.0
    noise = render_clip(plan, len(rows) - 1)
    assert rows[-1]["call_type"] == "noise" and not noise.signal.any() and rows[-1]["snr_db"] == ""


def _peak_hz(x: np.ndarray, sr: int = 16000) -> float:
    """Frequency of the strongest spectral peak (the fundamental: harmonics are weaker)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), 1 << 15))
    return float(np.argmax(spec) * sr / (1 << 15))


def _notes(x: np.ndarray) -> list[np.ndarray]:
    """Runs of non-zero samples (notes are separated by silence in a clean call)."""
    idx = np.flatnonzero(x)
    cuts = np.flatnonzero(np.diff(idx) > 1) + 1
    return [x[run[0] : run[-1] + 1] for run in np.split(idx, cuts)]


def test_great_calls_accelerate_with_rising_notes_and_males_are_lower():
    plan = plan_corpus(SyntheticConfig())
    rng = np.random.default_rng(0)
    for female, male in zip(plan.females, plan.males, strict=True):
        call = render_great_call(female, 0.2, 5 * 16000, 16000, 0.0, rng)
        notes = _notes(call)
        assert len(notes) == round(female.n_notes)
        starts = np.flatnonzero(np.diff(np.concatenate([[0], (call != 0).astype(int)])) == 1)
        ioi = np.diff(starts) / 16000
        assert np.all(np.diff(ioi) < 0) and ioi[-1] < 0.75 * ioi[0]  # the call accelerates
        for note in notes:  # every note sweeps upward
            q = len(note) // 3
            assert _peak_hz(note[-q:]) > _peak_hz(note[:q])
        peaks = [_peak_hz(n) for n in notes]
        assert peaks[-1] > peaks[0] and 450 < min(peaks) and max(peaks) < 1800  # Hylobates female range
        phrase, _ = render_male_phrase(male, 0.2, 5 * 16000, 16000, 0.0, rng)
        assert np.median([_peak_hz(n) for n in _notes(phrase)]) < np.median(peaks)
        assert starts[0] == int(0.2 * 16000)


def test_individuals_differ_more_than_their_jitter():
    config = SyntheticConfig()
    plan = plan_corpus(config)
    for signatures in (plan.females, plan.males):
        vectors = [s.vector() for s in signatures]
        between = np.mean([np.linalg.norm(a - b) for a, b in itertools.combinations(vectors, 2)])
        rng = np.random.default_rng(0)
        within = np.mean(
            [
                np.linalg.norm(jitter(s, config.call_jitter, rng).vector() - s.vector())
                for s in signatures
                for _ in range(20)
            ]
        )
        assert between > 3 * within
    flat = plan_corpus(SyntheticConfig(individual_spread=0.0))
    assert all(np.allclose(f.vector(), flat.females[0].vector()) for f in flat.females)


def test_ensure_corpus_caches_by_config_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROGRAM_CACHE", str(tmp_path / "cache"))
    config = SyntheticConfig(**{**SMALL.to_dict(), "n_individuals": 1, "noise_clips_per_recorder": 0})
    manifest = ensure_corpus(config)
    assert manifest == tmp_path / "cache" / "synthetic" / config.cache_key() / "manifest.csv"
    stamp = manifest.stat().st_mtime_ns
    assert ensure_corpus(config) == manifest and manifest.stat().st_mtime_ns == stamp
    assert SyntheticConfig(**{**config.to_dict(), "seed": 9}).cache_key() != config.cache_key()
    manifest.unlink()  # an interrupted corpus (no manifest) is regenerated
    assert ensure_corpus(config) == manifest and manifest.is_file()
    assert sorted(p.name for p in manifest.parents[1].iterdir()) == [config.cache_key()]  # no temp folders left
    other = ensure_corpus(config, cache_dir=tmp_path / "elsewhere")
    assert other.parent.parent == tmp_path / "elsewhere"


def test_generate_refuses_a_non_empty_folder(corpus):
    with pytest.raises(FileExistsError, match="ensure_corpus"):
        generate_corpus(corpus.parent, SMALL)


@pytest.mark.parametrize(
    "override, key",
    [
        ({"n_individuals": 0}, "n_individuals"),
        ({"clip_s": 2.0}, "clip_s"),
        ({"home_recorder_fraction": 1.5}, "home_recorder_fraction"),
        ({"call_jitter": -0.1}, "call_jitter"),
        ({"female_f_low_hz": (900.0, 1200.0)}, "female_f_low_hz"),
        ({"male_f_hz": (300.0, 5000.0)}, "male_f_hz"),
        ({"audio_format": "mp3"}, "audio_format"),
        ({"snr_db": float("nan")}, "snr_db"),
        ({"female_calls_per_individual": 0, "duets_per_individual": 0}, "female_calls_per_individual"),
    ],
)
def test_config_validation_names_the_key(override, key):
    with pytest.raises(ValueError, match=rf"SyntheticConfig\.{key}=.*: "):
        SyntheticConfig(**override)
