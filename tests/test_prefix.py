"""reprogram.runtime.prefix through run_experiment: methods that train above a frozen prefix train on its cached
activations with the metrics of the uncached path; random crops, heads below the cut and bad options fall
back or raise clearly."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from reprogram.experiment.config import ConfigError, load_config
from reprogram.experiment.runner import run_experiment
from reprogram.methods import build

pytestmark = pytest.mark.usefixtures("one_thread")

RATE, SECONDS = 16000, 0.5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """36 clips of exactly 0.5 s, 3 classes (tones of class-dependent pitch in noise), 3 recorders."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = ["path,label,recorder"]
    t = np.arange(int(RATE * SECONDS)) / RATE
    for i in range(36):
        label = i % 3
        tone = np.sin(2 * np.pi * (300 + 400 * label) * t + rng.uniform(0, 6))
        wave = 0.3 * tone + 0.05 * rng.standard_normal(t.size)
        sf.write(folder / f"c{i}.wav", wave.astype(np.float32), RATE)
        rows.append(f"c{i}.wav,k{label},r{i % 3}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


def _config(corpus, method: str, backbone: str, *extra: str, seconds: float = SECONDS):
    return load_config(None, [
        f"data.path={corpus}", f"data.clip_seconds={seconds}", "task.label_column=label", "split.kind=kfold",
        "split.n_folds=3", "task.group_column=null", f"method.name={method}", f"backbone.name={backbone}",
        "training.epochs=2", "training.batch_size=8", "training.lr=0.01", "seed=5", *extra,
    ])


def _pair(config, tmp_path):
    cached = run_experiment(config, tmp_path / "cached", cache_dir=tmp_path / "cache")
    plain = run_experiment(config, tmp_path / "plain", cache_dir=tmp_path / "cache", prefix_cache=False)
    return cached, plain


def _same_measure(cached: dict, plain: dict) -> None:
    for part in plain["metrics"]:
        for key, value in plain["metrics"][part].items():
            if isinstance(value, float):
                assert cached["metrics"][part][key] == pytest.approx(value, abs=1e-4), (part, key)
        np.testing.assert_allclose(cached["predictions"][part]["scores"], plain["predictions"][part]["scores"],
                                   atol=1e-3)
        assert cached["predictions"][part]["ids"] == plain["predictions"][part]["ids"]
    losses = [[h["train_loss"] for h in r["training"]["history"]] for r in (cached, plain)]
    np.testing.assert_allclose(*losses, rtol=1e-4)
    assert cached["params"] == plain["params"]
    assert plain["prefix_cache"] == {"used": False, "reason": "turned off (--no-prefix-cache)"}


CASES = [
    ("prompt", "tiny:whisper", ["method.budget=2"], "split", 0),
    ("deep_prompt", "tiny:hubert", ["method.budget=2"], "split", 0),
    ("lora", "tiny:wavlm", ["method.budget=2", "method.options.top_k=1"], "split", 1),
    ("adaption", "tiny:hubert", ["method.budget=2", "method.options.num_layers=1"], "split", 1),
    ("weighted_probe", "tiny:whisper", [], "pooled", 2),
    ("attentive_probe", "tiny:hubert", [], "frames", 2),
]


@pytest.mark.numerics
@pytest.mark.parametrize(("method", "backbone", "extra", "kind", "cut"), CASES)
def test_cached_prefix_measures_what_the_uncached_path_measures(corpus, tmp_path, method, backbone, extra, kind, cut):
    cached, plain = _pair(_config(corpus, method, backbone, *extra), tmp_path)
    record = cached["prefix_cache"]
    assert record["used"] and record["kind"] == kind and record["cut"] == cut and record["hit"] == {"data": False}
    _same_measure(cached, plain)
    again = run_experiment(_config(corpus, method, backbone, *extra, "seed=6"), tmp_path / "again",
                           cache_dir=tmp_path / "cache")
    assert again["prefix_cache"]["hit"] == {"data": True}  # another seed (other prompts / adapters) shares it


def test_no_cache_keeps_the_prefix_in_memory(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROGRAM_CACHE", str(tmp_path / "default"))
    config = _config(corpus, "prompt", "tiny:whisper", "method.budget=2")
    memory = run_experiment(config, tmp_path / "memory", use_cache=False)
    assert not (tmp_path / "default").exists()  # nothing written to the (default) cache
    disk = run_experiment(config, tmp_path / "disk", cache_dir=tmp_path / "cache")
    assert memory["prefix_cache"]["store"] == "memory" and memory["prefix_cache"]["hit"] == {"data": None}
    assert memory["metrics"]["test"]["balanced_accuracy"] == pytest.approx(disk["metrics"]["test"]["balanced_accuracy"])


def test_random_crops_and_heads_below_the_cut_fall_back(corpus, tmp_path, caplog):
    shorter = run_experiment(_config(corpus, "prompt", "tiny:whisper", "method.budget=2", seconds=0.3),
                             tmp_path / "a", cache_dir=tmp_path / "cache")
    assert not shorter["prefix_cache"]["used"] and "random" in shorter["prefix_cache"]["reason"]
    assert "prefix cache not used" in caplog.text
    below = run_experiment(_config(corpus, "lora", "tiny:hubert", "method.options.top_k=1",
                                   "method.options.head=weighted_sum"), tmp_path / "b", cache_dir=tmp_path / "cache")
    assert not below["prefix_cache"]["used"] and "below the cut" in below["prefix_cache"]["reason"]
    program = run_experiment(_config(corpus, "finetune", "tiny:hubert", "training.epochs=1"), tmp_path / "c",
                             cache_dir=tmp_path / "cache")
    assert not program["prefix_cache"]["used"]


def test_top_k_option(corpus):
    built = build(_config(corpus, "lora", "tiny:hubert", "method.options.top_k=1"), ["a", "b"])
    assert built.cut == 1
    assert build(_config(corpus, "lora", "tiny:hubert", "method.options.layers=[1]"), ["a", "b"]).cut == 1
    assert build(_config(corpus, "lora", "tiny:hubert"), ["a", "b"]).cut is None
    for bad, match in (("method.options.top_k=3", "1..2"), ("method.options.top_k=0", "1..2")):
        with pytest.raises(ConfigError, match=match):
            build(_config(corpus, "lora", "tiny:hubert", bad), ["a", "b"])
    with pytest.raises(ConfigError, match="not both"):
        build(_config(corpus, "ia3", "tiny:hubert", "method.options.top_k=1", "method.options.layers=[1]"), ["a", "b"])
    with pytest.raises(ConfigError, match="top_k is for"):
        build(_config(corpus, "prompt", "tiny:hubert", "method.options.top_k=1"), ["a", "b"])


@pytest.mark.numerics
def test_external_test_set_is_scored_from_its_own_cached_activations(corpus, tmp_path):
    config = _config(corpus, "prompt", "tiny:hubert", "method.budget=2", f"data.test_path={corpus}")
    cached, plain = _pair(config, tmp_path)
    assert set(cached["prefix_cache"]["hit"]) == {"data", "external"}
    _same_measure(cached, plain)
    assert cached["predictions"]["external"]["ids"] == plain["predictions"]["external"]["ids"]


def test_the_prefix_key_follows_the_lower_weights_only(corpus, tmp_path):
    """New adapters above the cut reuse the entry; a changed weight below the cut recomputes it."""
    import torch

    from reprogram.data.dataset import WaveformDataset
    from reprogram.data.loaders import load_table
    from reprogram.runtime.prefix import _compute

    config = _config(corpus, "lora", "tiny:hubert", "method.options.top_k=1")
    data = WaveformDataset(load_table(corpus, label_column="label"), RATE, SECONDS, crop="center")
    first, point, computed = _compute("split", 1, build(config, ["a"] * 3).model, data, tmp_path, 8)
    assert computed and point == "layer_input_1" and first.values.shape[:2] == (36, 24)
    other = build(config.__class__(**{**vars(config), "seed": 9}), ["a"] * 3).model  # other adapters
    assert not _compute("split", 1, other, data, tmp_path, 8)[2]
    with torch.no_grad():
        other.backbone.model.encoder.layers[0].feed_forward.output_dense.bias.add_(0.1)  # below the cut
    again, _, computed = _compute("split", 1, other, data, tmp_path, 8)
    assert computed and not np.allclose(again.values, first.values)


def test_command_line_switch(corpus, tmp_path):
    """``reprogram run ... --no-prefix-cache`` runs the uncached path (recorded), the default the cached one."""
    import json

    from reprogram.experiment.config import run_id
    from reprogram.experiment.results import result_path
    from reprogram.experiment.runner import main

    settings = (f"data.path={corpus}", "data.clip_seconds=0.5", "task.label_column=label", "split.kind=kfold",
                "split.n_folds=3", "task.group_column=null", "method.name=prompt", "backbone.name=tiny:hubert",
                "method.budget=2", "training.epochs=1", "training.batch_size=8", "training.lr=0.01", "seed=5")
    config = load_config(None, list(settings))
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    sets = [x for kv in settings for x in ("--set", kv)]
    for flag, used in (("--no-prefix-cache", False), ("--prefix-cache", True)):
        out = tmp_path / flag
        assert main([str(empty), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), flag, *sets]) == 0
        result = json.loads(result_path(out, run_id(config)).read_text())
        assert result["prefix_cache"]["used"] is used
