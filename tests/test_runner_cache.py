"""The runner's disk caches: frozen work (decoding, backbone features, MFCC features) is done once across runs,
seeds and folds, results do not change, and any change of the inputs (weights, audio files, options) recomputes."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import backbones
from backbones.base import Backbone
from reprogram.data.dataset import WaveformDataset
from reprogram.data.loaders import load_table
from reprogram.data.synthetic import ensure_corpus, task_manifest
from reprogram.experiment.config import load_config
from reprogram.experiment.runner import main, run_experiment
from reprogram.methods.probes import pooled_features
from reprogram.runtime.cache.store import read_meta

PROBE = ["data.path=synthetic", "data.clip_seconds=0.5", "data.sample_rate=16000", "method.name=linear_probe",
         "backbone.name=tiny:hubert", "method.options.cs=[0.1,1.0]"]
MFCC = ["data.path=synthetic", "data.clip_seconds=0.5", "data.sample_rate=16000", "method.name=mfcc"]


@contextmanager
def backbone_calls():
    """Counts forward calls of every :class:`Backbone` (a global forward hook on the real modules)."""
    calls = []

    def hook(module, args, output):
        if isinstance(module, Backbone):
            calls.append(type(module).__name__)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def _entries(cache: Path, kind: str) -> list[Path]:
    base = cache / kind
    return sorted(p for p in base.iterdir() if (p / "meta.json").is_file()) if base.is_dir() else []


def test_linear_probe_features_computed_once_across_runs_seeds_and_folds(tmp_path):
    cache = tmp_path / "cache"
    with backbone_calls() as first_calls:
        first = run_experiment(load_config(None, PROBE), tmp_path / "a", cache_dir=cache)
    assert first_calls, "the first run must run the frozen encoder"
    with backbone_calls() as calls:
        again = run_experiment(load_config(None, PROBE), tmp_path / "b", cache_dir=cache)  # same run, new folder
        other_seed = run_experiment(load_config(None, [*PROBE, "seed=1"]), tmp_path / "a", cache_dir=cache)
        other_fold = run_experiment(load_config(None, [*PROBE, "split.kind=kfold", "split.n_folds=3", "split.fold=1",
                                                               "task.group_column=null"]),
                                    tmp_path / "a", cache_dir=cache)
        other_layer = run_experiment(load_config(None, [*PROBE, "method.options.layer=1"]), tmp_path / "a",
                                     cache_dir=cache)
    assert calls == [], f"cached runs re-ran the frozen encoder {len(calls)} times"
    assert again["metrics"] == first["metrics"] and again["predictions"] == first["predictions"]
    assert again["training"] == first["training"]
    assert len({first["run_id"], other_seed["run_id"], other_fold["run_id"], other_layer["run_id"]}) == 4
    assert len(_entries(cache, "features")) == 1 and len(_entries(cache, "waveforms")) == 1

    with backbone_calls() as uncached_calls:  # the in-memory path gives the same result
        plain = run_experiment(load_config(None, PROBE), tmp_path / "c", use_cache=False)
    assert uncached_calls
    assert plain["training"]["selection"]["C"] == first["training"]["selection"]["C"]
    for part, m in first["metrics"].items():
        assert plain["metrics"][part]["balanced_accuracy"] == m["balanced_accuracy"], part
        np.testing.assert_allclose(plain["predictions"][part]["scores"], first["predictions"][part]["scores"],
                                   atol=1e-4)


def test_other_backbone_weights_recompute(tmp_path):
    cache = tmp_path / "cache"
    run_experiment(load_config(None, PROBE), tmp_path / "a", cache_dir=cache)
    with backbone_calls() as calls:
        run_experiment(load_config(None, [*PROBE, "backbone.options.seed=1"]), tmp_path / "a", cache_dir=cache)
    assert calls and len(_entries(cache, "features")) == 2


def _copy_corpus(dest: Path) -> Path:
    """The synthetic call-type corpus copied into ``dest`` (its manifest names files relative to itself)."""
    manifest = task_manifest(ensure_corpus(), "call_type")
    shutil.copytree(manifest.parent, dest)
    return dest / manifest.name


def test_a_rewritten_audio_file_recomputes_waveforms_and_features(tmp_path):
    manifest = _copy_corpus(tmp_path / "corpus")
    table = load_table(manifest, label_column="call_type")
    data = WaveformDataset(table, 16000, 0.5, crop="center")
    encoder = backbones.create("tiny:hubert")
    cache = tmp_path / "cache"
    before = pooled_features(encoder, data, cache_dir=cache)  # (M, L, D)
    with backbone_calls() as calls:
        same = pooled_features(encoder, WaveformDataset(table, 16000, 0.5, crop="center"), cache_dir=cache)
    assert calls == [] and torch.equal(same, before)

    path = table[0].path
    wave, rate = sf.read(path, dtype="float32")
    sf.write(path, 0.25 * wave, rate)  # the same file name, other samples
    with backbone_calls() as calls:
        after = pooled_features(encoder, WaveformDataset(table, 16000, 0.5, crop="center"), cache_dir=cache)
    assert calls, "a rewritten audio file must not be served from the cache"
    assert not torch.allclose(after[0], before[0]) and torch.equal(after[1:], before[1:])

    with torch.no_grad():  # one weight changed in place: recomputed
        next(encoder.parameters()).add_(0.01)
    with backbone_calls() as calls:
        pooled_features(encoder, WaveformDataset(table, 16000, 0.5, crop="center"), cache_dir=cache)
    assert calls and len(_entries(cache, "features")) == 3


def test_mfcc_features_cached_and_keyed_by_options(tmp_path):
    cache = tmp_path / "cache"
    first = run_experiment(load_config(None, MFCC), tmp_path / "a", cache_dir=cache)
    (entry,) = _entries(cache, "features")
    created = read_meta(entry)["created"], (entry / "features.npy").stat().st_mtime_ns
    again = run_experiment(load_config(None, MFCC), tmp_path / "b", cache_dir=cache)
    run_experiment(load_config(None, [*MFCC, "seed=3"]), tmp_path / "a", cache_dir=cache)
    assert _entries(cache, "features") == [entry]
    assert (read_meta(entry)["created"], (entry / "features.npy").stat().st_mtime_ns) == created
    assert again["metrics"] == first["metrics"]
    assert "code" in read_meta(entry)["parts"], "MFCC features must be keyed by the code that computes them"
    for split in ("train", "val", "test"):
        stored = first["predictions"][split]
        assert len(stored["ids"]) == len(stored["target"]) == len(set(stored["ids"]))  # clip ids pair systems by clip
        # each clip's recorder, for per-recorder scores; the split's recorders are exactly the part's
        assert len(stored["groups"]["recorder"]) == len(stored["target"])
        assert set(stored["groups"]["recorder"]) == set(first["split"]["groups"][split].split(","))
    plain = run_experiment(load_config(None, MFCC), tmp_path / "c", use_cache=False)
    assert plain["metrics"] == first["metrics"]

    run_experiment(load_config(None, [*MFCC, "method.options.n_mfcc=13"]), tmp_path / "a", cache_dir=cache)
    assert len(_entries(cache, "features")) == 2


def test_cli_cache_dir_and_no_cache(tmp_path):
    config = tmp_path / "mfcc.yaml"
    config.write_text("method:\n  name: mfcc\n")
    args = [a for o in MFCC for a in ("--set", o)]
    cache = tmp_path / "cache"
    assert main([str(config), *args, "--out", str(tmp_path / "a"), "--cache-dir", str(cache)]) == 0
    assert len(_entries(cache, "features")) == 1 and len(_entries(cache, "waveforms")) == 1
    other = tmp_path / "other"
    assert main([str(config), *args, "--out", str(tmp_path / "b"), "--cache-dir", str(other), "--no-cache"]) == 0
    assert not other.exists()


def test_sweep_runs_share_the_cache_dir(tmp_path):
    from reprogram.experiment.sweep import run_sweep

    spec = {"name": "cache-sweep", "config": {"data": {"path": "synthetic", "clip_seconds": 0.5,
                                                       "sample_rate": 16000}},
            "methods": [{"name": "mfcc"}], "seeds": [0, 1]}
    cache = tmp_path / "cache"
    summary = run_sweep(spec, tmp_path / "out", executor="submitit-debug", log=lambda *_: None, cache_dir=cache)
    assert len(summary["completed"]) == 2 and not summary["failed"]
    assert len(_entries(cache, "features")) == 1 and len(_entries(cache, "waveforms")) == 1
