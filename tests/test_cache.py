"""The content-addressed cache: builds once, never serves stale data, atomic entries, report and clear."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from reprogram.data import load_table
from reprogram.data.dataset import WaveformDataset
from reprogram.runtime.cache import (
    ArrayDataset,
    backbone_fingerprint,
    cache_size_report,
    cached_activations,
    cached_features,
    cached_waveforms,
    clear,
    get_or_build,
)
from reprogram.runtime.cache.store import cache_root, read_meta
from tests import numerics

SR = 16000


def write_tone(path, seconds: float, freq: float, sr: int = SR) -> None:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


@pytest.fixture
def table(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i, (sec, freq) in enumerate([(1.0, 440.0), (0.6, 660.0), (1.2, 880.0)]):
        write_tone(audio / f"c{i}.wav", sec, freq)
    (audio / "m.csv").write_text("path,label\nc0.wav,a\nc1.wav,b\nc2.wav,a\n")
    return load_table(audio / "m.csv")


@pytest.fixture(scope="module")
def whisper():
    import backbones

    return backbones.create("tiny:whisper")


def count_decodes(monkeypatch) -> list:
    import reprogram.runtime.cache.waveforms as wv

    calls = []
    real = wv.load_audio
    monkeypatch.setattr(wv, "load_audio", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    return calls


def test_entries_build_once_and_survive_damage_and_concurrent_writers(tmp_path):
    builds = []

    def build(folder):
        builds.append(folder)
        np.save(folder / "x.npy", np.arange(4.0))
        return {"note": "hi"}

    def load(folder):
        return np.load(folder / "x.npy", mmap_mode="r")

    x, built = get_or_build(tmp_path, "features", {"a": 1}, build, load)
    assert built and isinstance(x, np.memmap) and x.tolist() == [0, 1, 2, 3]
    _, built = get_or_build(tmp_path, "features", {"a": 1}, build, load)
    assert not built and len(builds) == 1
    _, built = get_or_build(tmp_path, "features", {"a": 2}, build, load)
    assert built
    entry = os.path.dirname(x.filename)
    meta = read_meta(entry)
    assert meta["parts"]["a"] == 1 and meta["info"] == {"note": "hi"} and "x.npy" in meta["files"]
    os.remove(os.path.join(entry, "x.npy"))  # a damaged entry is rebuilt, not served
    _, built = get_or_build(tmp_path, "features", {"a": 1}, build, load)
    assert built

    def failing(folder):
        np.save(folder / "x.npy", np.zeros(2))
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        get_or_build(tmp_path, "features", {"a": 3}, failing, load)
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "features").iterdir())

    def racing(folder):  # another writer finishes the same key while this one builds
        get_or_build(tmp_path, "features", {"a": 4}, build, load)
        np.save(folder / "x.npy", np.arange(4.0))

    x, built = get_or_build(tmp_path, "features", {"a": 4}, racing, load)
    assert built and x.tolist() == [0, 1, 2, 3]
    with pytest.raises(TypeError, match="key.b"):
        get_or_build(tmp_path, "features", {"b": object()}, build, load)


def test_report_and_clear_by_kind(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROGRAM_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env" and cache_root(tmp_path) == tmp_path  # explicit folder wins
    for kind, n in (("features", 2), ("waveforms", 1)):
        for i in range(n):
            get_or_build(tmp_path, kind, {"i": i}, lambda f: np.save(f / "x.npy", np.zeros(100)), lambda f: f)
    (tmp_path / "features" / ".tmp-dead").mkdir()  # left by a killed writer
    (tmp_path / "notes.txt").write_text("not ours")
    report = cache_size_report(tmp_path)
    assert report["kinds"]["features"]["entries"] == 2 and report["kinds"]["waveforms"]["entries"] == 1
    assert report["kinds"]["features"]["incomplete"] == 1 and report["kinds"]["activations"]["entries"] == 0
    assert report["kinds"]["features"]["bytes"] > 2 * 800 and report["total_bytes"] >= 3 * 800
    freed = clear(tmp_path, "features")
    assert freed["features"] > 0 and list(freed) == ["features"]
    assert cache_size_report(tmp_path)["kinds"]["waveforms"]["entries"] == 1
    clear(tmp_path)
    assert cache_size_report(tmp_path)["total_bytes"] == 0 and (tmp_path / "notes.txt").is_file()
    with pytest.raises(ValueError, match="kind"):
        clear(tmp_path, "everything")


def test_waveform_cache_matches_decoding_and_is_mapped(table, tmp_path, monkeypatch):
    plain = WaveformDataset(table, 8000, None)
    cached = WaveformDataset(table, 8000, None, cache_dir=tmp_path / "c")
    assert not cached.in_memory
    for i in range(len(table)):
        assert torch.equal(plain[i][0], cached[i][0])
    assert cached.in_memory and isinstance(cached.waveform(0).base, np.memmap)
    calls = count_decodes(monkeypatch)
    again = WaveformDataset(table, 8000, 0.5, crop="random", cache_dir=tmp_path / "c")
    again.preload()
    assert calls == [] and again[2][0].shape == (4000,)
    clone = pickle.loads(pickle.dumps(again))  # spawned workers re-map the file
    assert torch.equal(clone[2][0], again[2][0]) and calls == []
    WaveformDataset(table, 16000, None, cache_dir=tmp_path / "c").preload()  # another rate: another entry
    assert len(calls) == 3 and cache_size_report(tmp_path / "c")["kinds"]["waveforms"]["entries"] == 2
    # clips decoded in memory already are packed without decoding again
    memory: dict = {}
    WaveformDataset(table, 22050, None, cache=memory).preload()
    calls.clear()
    WaveformDataset(table, 22050, None, cache=memory, cache_dir=tmp_path / "c").preload()
    assert calls == []


def test_waveform_cache_never_stale(table, tmp_path, monkeypatch):
    calls = count_decodes(monkeypatch)
    path = table[1].path
    first = np.array(cached_waveforms(table, SR, tmp_path)[(path, None, None, SR)])
    assert len(calls) == 3
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: stat identity recomputes
    cached_waveforms(table, SR, tmp_path)
    assert len(calls) == 6
    write_tone(path, 0.6, 1000.0)  # new content, same size
    new = np.array(cached_waveforms(table, SR, tmp_path)[(path, None, None, SR)])
    assert len(calls) == 9 and new.shape == first.shape and not np.allclose(new, first)
    # content identity: a touch alone keeps the entry, new bytes do not
    cached_waveforms(table, SR, tmp_path, identity="content")
    n = len(calls)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    cached_waveforms(table, SR, tmp_path, identity="content")
    assert len(calls) == n
    write_tone(path, 0.6, 1200.0)
    cached_waveforms(table, SR, tmp_path, identity="content")
    assert len(calls) == n + 3
    # a changed segment bound is another key
    seg = table.subset([0])
    seg.records[0] = type(seg.records[0])(seg.records[0].path, "a", start_s=0.1, end_s=0.5)
    assert len(cached_waveforms(seg, SR, tmp_path)[(seg[0].path, 0.1, 0.5, SR)]) == int(0.4 * SR)


def test_backbone_fingerprint_tracks_weights(whisper):
    fp = backbone_fingerprint(whisper)
    assert backbone_fingerprint(whisper) == fp
    p = next(whisper.parameters())
    saved = p.detach().clone()
    with torch.no_grad():
        p.add_(1.0)
    moved = backbone_fingerprint(whisper)
    with torch.no_grad():
        p.copy_(saved)  # in place again: same bytes, same fingerprint
    assert moved != fp and backbone_fingerprint(whisper) == fp
    old = p.data
    p.data = old.clone() * 2  # a new storage without an in-place op
    assert backbone_fingerprint(whisper) != fp
    p.data = old
    assert backbone_fingerprint(whisper) == fp


@pytest.mark.numerics
def test_features_cached_equal_direct_and_recompute_on_any_key_change(table, tmp_path, whisper):
    data = WaveformDataset(table, SR, None)  # unequal lengths: each clip's true length reaches the encoder
    feats = cached_features(whisper, data, {"transform": {"name": "identity"}}, cache_dir=tmp_path, batch_size=2)
    assert feats.computed and feats.features.shape == (3, 32) and feats.hidden.shape == (3, 3, 32)
    assert feats.logits is None and feats.layers == (0, 1, 2) and isinstance(feats.features, np.memmap)
    with torch.inference_mode():  # each clip's outputs are those of the clip alone (no padding in batches)
        for i in range(3):
            alone = whisper(data[i][0][None])
            numerics.assert_chain_close(feats.features[i], alone.features[0], whisper, what=f"clip {i} features")
            numerics.assert_chain_close(feats.layer(1)[i], alone.hidden_states[1].mean(1)[0], whisper,
                                        what=f"clip {i} layer 1")
    np.testing.assert_array_equal(feats.layer(-1), feats.hidden[:, 2])
    again = cached_features(whisper, data, {"transform": {"name": "identity"}}, cache_dir=tmp_path, batch_size=3)
    assert not again.computed and np.array_equal(again.features, feats.features)
    assert cached_features(whisper, data, {"transform": {"name": "other"}}, cache_dir=tmp_path).computed
    one = cached_features(whisper, data, {"transform": {"name": "identity"}}, layer=-1, cache_dir=tmp_path)
    assert one.computed and one.layers == (2,)
    numerics.assert_chain_close(one.layer(2), feats.layer(2), whisper, what="layer 2 cached alone")
    with pytest.raises(KeyError, match="not cached"):
        one.layer(0)
    p = next(whisper.parameters())
    saved = p.detach().clone()
    with torch.no_grad():
        p.add_(0.05)
    try:
        moved = cached_features(whisper, data, {"transform": {"name": "identity"}}, cache_dir=tmp_path)
        assert moved.computed and not np.allclose(moved.features, feats.features)
    finally:
        with torch.no_grad():
            p.copy_(saved)
    st = os.stat(table[0].path)
    os.utime(table[0].path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a touched recording: recomputed
    assert cached_features(whisper, data, {"transform": {"name": "identity"}}, cache_dir=tmp_path).computed
    waves = torch.stack([data[i][0][:8000] for i in range(3)])  # raw (M, N) waveforms: hashed
    assert cached_features(whisper, waves, cache_dir=tmp_path).computed
    assert not cached_features(whisper, waves.numpy(), cache_dir=tmp_path).computed
    with pytest.raises(ValueError, match="random"):
        cached_features(whisper, WaveformDataset(table, SR, 0.5, crop="random"), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="key_parts"):
        cached_features(whisper, waves, preprocess=lambda w: w, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="out of range"):
        cached_features(whisper, waves, layer=7, cache_dir=tmp_path)


def test_activations_uniform_ragged_and_as_training_items(table, tmp_path, whisper):
    def lower(wave):  # the frozen conv stem: (B, N) -> (B, T, D)
        return whisper.embed(whisper.frontend(wave))

    fixed = WaveformDataset(table, SR, 0.5)
    acts = cached_activations(lower, fixed, {}, point="conv_stem", backbone=whisper, cache_dir=tmp_path)
    assert acts.computed and acts.offsets is None and acts.values.shape == (3, 25, 32)
    with torch.inference_mode():
        numerics.assert_chain_close(acts[1], lower(fixed[1][0][None])[0], whisper, what="cached conv stem")
    assert not cached_activations(lower, fixed, {}, point="conv_stem", backbone=whisper, cache_dir=tmp_path).computed
    assert cached_activations(lower, fixed, {}, point="layer_1", backbone=whisper, cache_dir=tmp_path).computed
    ragged = cached_activations(lower, WaveformDataset(table, SR, None), {}, point="conv_stem", backbone=whisper,
                                cache_dir=tmp_path, batch_size=3)
    assert [ragged[i].shape[0] for i in range(3)] == [50, 30, 60] and ragged.offsets.tolist() == [0, 50, 80, 140]
    with torch.inference_mode():
        numerics.assert_chain_close(ragged[2], lower(WaveformDataset(table, SR, None)[2][0][None])[0], whisper,
                                    what="ragged cached conv stem")
    items = ArrayDataset(ragged, [0, 1, 0])
    x, target, index = items[1]
    assert x.shape == (30, 32) and x.dtype == torch.float32 and (target, index) == (1, 1)
    with pytest.raises(ValueError, match="point"):
        cached_activations(lower, fixed, {}, point="", cache_dir=tmp_path)


def test_cache_cli_info_and_clear(tmp_path, capsys):
    from reprogram.cli import main

    get_or_build(tmp_path, "activations", {"x": 1}, lambda f: np.save(f / "v.npy", np.zeros(10)), lambda f: f)
    assert main(["cache", "info", "--dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kinds"]["activations"]["entries"] == 1 and report["root"] == str(tmp_path)
    assert main(["cache", "info", "--dir", str(tmp_path)]) == 0
    assert "activations" in capsys.readouterr().out
    assert main(["cache", "clear", "--dir", str(tmp_path), "--kind", "activations"]) == 0
    assert cache_size_report(tmp_path)["kinds"]["activations"]["entries"] == 0


def test_batches_group_equal_lengths_and_cover_every_clip():
    from reprogram.runtime.cache.features import _batches

    lengths = [5, 6, 5, 7, 5, 6, 8, 9, 10, 11, 5, 12]
    data = [np.full(n, i, dtype=np.float32) for i, n in enumerate(lengths)]
    seen = []
    for wave, index in _batches(data, 2):
        assert wave.shape[0] == len(index) <= 2
        for row, i in zip(wave, index, strict=True):
            assert row.shape[0] == lengths[i] and bool((row == i).all())
        seen.extend(index)
    assert sorted(seen) == list(range(len(lengths)))


def test_cache_benchmark_runs_on_a_few_clips(tmp_path, capsys):
    import importlib.util

    folder = tmp_path / "danum-gibbon"
    folder.mkdir()
    for i in range(4):
        write_tone(folder / f"c{i}.wav", 1.0, 300.0 + 100 * i)
    (folder / "manifest.csv").write_text("path,label,recorder\n" + "".join(
        f"c{i}.wav,{'ab'[i % 2]},S{i % 2}\n" for i in range(4)))
    spec = importlib.util.spec_from_file_location("bench_cache", os.path.join(os.path.dirname(__file__), "..",
                                                                              "benchmarks", "cache.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "r.json"
    argv = ["--data-dir", str(tmp_path), "--clip-seconds", "0.5", "--batch-size", "2", "--epochs", "1",
            "--backbone", "tiny:whisper", "--probe-uncached-epochs", "1", "--probe-cached-epochs", "2",
            "--cache-dir", str(tmp_path / "cache"), "--json", str(out)]
    assert bench.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["clips"] == 4 and len(result["data_path"]["disk_mmap"]) == 1 and result["probe_ratio"] > 0
    assert "ratio cached / uncached" in capsys.readouterr().out
    report = cache_size_report(tmp_path / "cache")["kinds"]
    assert report["waveforms"]["entries"] == 1 and report["features"]["entries"] == 1
    assert bench.main(["--data-dir", str(tmp_path / "absent")]) == 0
    assert "skipped" in capsys.readouterr().out


def edited_sources(monkeypatch, *suffixes: str) -> None:
    """Simulate an edit of the toolkit's own source files ending in ``suffixes`` (new bytes, fresh process)."""
    import reprogram.runtime.cache.code as code

    real = code.read_source
    monkeypatch.setattr(code, "_SOURCE_MEMO", {})  # a new process reads the sources again
    monkeypatch.setattr(code, "read_source",
                        lambda path: real(path) + (b"\n# edited\n" if path.endswith(suffixes) else b""))


def test_code_fingerprint_names_the_modules_computing_a_result(whisper):
    from reprogram.methods.mfcc import mfcc_features
    from reprogram.runtime.cache import code_fingerprint

    fp = code_fingerprint(whisper)
    assert fp == code_fingerprint(whisper) and len(fp["digest"]) == 32
    assert fp["modules"] == ["backbones.base", "backbones.hf_speech", "backbones.hf_whisper"]  # MRO, our packages only
    assert code_fingerprint(mfcc_features)["modules"] == ["reprogram.methods.mfcc"]
    assert code_fingerprint("reprogram.methods.mfcc") == code_fingerprint(mfcc_features)
    assert code_fingerprint(np.mean, torch.nn.Linear(2, 2))["modules"] == []  # libraries: covered by versions
    with pytest.raises(KeyError, match="import"):
        code_fingerprint("reprogram.no_such_module")


def test_code_fingerprint_changes_with_source_bytes(monkeypatch, whisper):
    from reprogram.methods.mfcc import mfcc_features
    from reprogram.runtime.cache import code_fingerprint

    before, mfcc = code_fingerprint(whisper), code_fingerprint(mfcc_features)
    edited_sources(monkeypatch, "hf_speech.py")
    after = code_fingerprint(whisper)
    assert after["digest"] != before["digest"] and after == code_fingerprint(whisper)
    assert code_fingerprint(mfcc_features) == mfcc  # other code: same key


def test_features_and_waveforms_recompute_when_their_code_changes(table, tmp_path, whisper, monkeypatch):
    data = WaveformDataset(table, SR, None)
    first = cached_features(whisper, data, layer=None, cache_dir=tmp_path)
    modules = read_meta(first.path)["parts"]["code"]["modules"]
    assert {"backbones.hf_speech", "reprogram.runtime.cache.features", "reprogram.data.audio",
            "reprogram.data.dataset"} <= set(modules)
    calls = count_decodes(monkeypatch)
    cached_waveforms(table, SR, tmp_path)
    assert len(calls) == 3
    edited_sources(monkeypatch, "mfcc.py")  # code that computes neither: both entries are reused
    assert not cached_features(whisper, data, layer=None, cache_dir=tmp_path).computed
    cached_waveforms(table, SR, tmp_path)
    assert len(calls) == 3
    edited_sources(monkeypatch, "hf_speech.py")  # the backbone's forward code: features recomputed
    again = cached_features(whisper, data, layer=None, cache_dir=tmp_path)
    assert again.computed and again.path != first.path
    assert not cached_features(whisper, data, layer=None, cache_dir=tmp_path).computed
    cached_waveforms(table, SR, tmp_path)
    assert len(calls) == 3  # decoding does not depend on the backbone's code
    edited_sources(monkeypatch, "data/audio.py")  # the decoder: waveforms and the features of decoded data
    cached_waveforms(table, SR, tmp_path)
    assert len(calls) == 6
    assert cached_features(whisper, data, layer=None, cache_dir=tmp_path).computed
    edited_sources(monkeypatch, "cache/features.py")  # the feature cache's own code
    assert cached_features(whisper, data, layer=None, cache_dir=tmp_path).computed
