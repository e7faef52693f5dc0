"""``image_probe`` (a probe of an image / video network on a program's canvas) and ``simclr`` (the in-domain
self-supervised reference) through the runner on the tiny synthetic corpus, with the tiny twins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprogram.experiment.config import load_config
from reprogram.experiment.runner import run_experiment
from reprogram.experiment.suite import TINY_SYNTHETIC

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["data.clip_seconds=1.0", "data.sample_rate=16000", "data.synthetic=" + str(dict(TINY_SYNTHETIC))]


@pytest.mark.parametrize("backbone, transform", [("tiny:vit", "pad"), ("tiny:vit", "full"), ("tiny:r3d", "video")])
def test_image_probe_runs_and_reuses_its_cached_features(tmp_path, backbone, transform):
    overrides = ["method.name=image_probe", f"backbone.name={backbone}", f"method.options.transform={transform}", *TINY]
    config = load_config(None, overrides)
    result = run_experiment(config, tmp_path / "a", cache_dir=tmp_path / "cache")
    assert set(result["metrics"]) == {"train", "val", "test"}
    assert result["training"]["selection"]["C"] in (0.001, 0.01, 0.1, 1.0, 10.0)
    entries = sorted((tmp_path / "cache" / "features").iterdir())
    assert len(entries) == 1
    # the same config in another results folder reuses the entry (same scores); another seed too
    again = run_experiment(load_config(None, overrides + ["seed=1"]), tmp_path / "b", cache_dir=tmp_path / "cache")
    assert sorted((tmp_path / "cache" / "features").iterdir()) == entries
    assert again["metrics"]["test"]["balanced_accuracy"] == result["metrics"]["test"]["balanced_accuracy"]


def test_a_changed_canvas_or_weight_makes_a_new_cache_entry(tmp_path):
    from reprogram.methods import build
    from reprogram.methods.image_probe import canvas_options

    base = ["method.name=image_probe", "backbone.name=tiny:vit", "method.options.transform=pad", *TINY]
    waves = np.random.default_rng(0).standard_normal((3, 16000)).astype(np.float32)

    def entry(extra: list[str], seed: int | None = None) -> str:
        built = build(load_config(None, base + extra), ["a", "b"])
        if seed is not None:  # other backbone weights
            with torch.no_grad():
                next(built.features.backbone.parameters()).add_(1.0)
        built.features.featurize(waves, tmp_path)  # an (M, N) array is keyed by its bytes
        return str(sorted(p.name for p in (tmp_path / "features").iterdir()))

    first = entry([])
    assert entry([]) == first  # same config: reused
    names = {first}
    for extra in (["method.budget=2"], ["method.options.colour=viridis"], ["method.options.frontend={n_mels: 64}"]):
        names.add(entry(extra))
    names.add(entry([], seed=1))
    assert len(names) == 5 and len({len(n) for n in names}) == 5  # every change added one entry
    # pad and AutoVP see the same canvas at init; the full program a different one
    pad = build(load_config(None, base), ["a", "b"]).features.transform
    full = build(load_config(None, base + ["method.options.transform=full"]), ["a", "b"]).features.transform
    assert canvas_options(pad) != canvas_options(full)


def test_image_probe_features_are_the_pooled_input_of_the_classifier():
    """``features`` is what the classifier reads: its logits are the head applied to the features."""
    import backbones

    vit = backbones.create("tiny:vit")
    x = torch.randn(2, *vit.spec.shape)
    out = vit(x)
    torch.testing.assert_close(vit.model.get_classifier()(out.features), out.logits)
    r3d = backbones.create("tiny:r3d")
    out = r3d(torch.randn(2, *r3d.spec.shape))
    torch.testing.assert_close(r3d.model.fc(out.features), out.logits)


def test_image_probe_refuses_speech_backbones_and_mappers():
    from reprogram.methods import build

    with pytest.raises(ValueError, match="image or video backbone"):
        build(load_config(None, ["method.name=image_probe", "backbone.name=tiny:hubert"]), ["a", "b"])
    with pytest.raises(ValueError, match="mapper"):
        build(load_config(None, ["method.name=image_probe", "backbone.name=tiny:vit", "method.options.mapper=flm"]),
              ["a", "b"])


SIMCLR = ["method.name=simclr", "data.clip_seconds=2.0", "data.sample_rate=8000",
          "method.options={epochs: 3, batch_size: 8, width: 4, crop_seconds: 1.0}", *TINY[2:]]


def test_simclr_pretrains_on_training_clips_only_and_is_deterministic(tmp_path):
    result = run_experiment(load_config(None, SIMCLR), tmp_path / "a", use_cache=False)
    pre = result["training"]["pretraining"]
    from reprogram.experiment.inputs import load_data, make_split

    config = load_config(None, SIMCLR)
    split = make_split(load_data(config.data.path, config), config)
    parts = split.parts()
    assert pre["clips"] == list(parts["train"])
    assert not set(pre["clips"]) & (set(parts["val"]) | set(parts["test"]))
    assert len(pre["loss_by_epoch"]) == 3 and result["backbone"] is None
    again = run_experiment(load_config(None, SIMCLR), tmp_path / "b", use_cache=False)
    assert again["training"]["pretraining"]["loss_by_epoch"] == pre["loss_by_epoch"]
    assert again["predictions"] == result["predictions"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simclr_loss_falls(seed):
    """On the 21 clips of the tiny synthetic corpus (batches of B = 7, 3 steps an epoch, 30 epochs) the NT-Xent loss
    of the last 5 epochs is below that of the first 3 and below chance, log(2B - 1) = 2.56 (measured over seeds
    0-2: first 2.41-2.50, last 1.81-2.04)."""
    import os

    from reprogram.data.audio import load_audio
    from reprogram.data.synthetic import SyntheticConfig, ensure_corpus
    from reprogram.methods.simclr import SimclrConfig, SimclrFeatures

    manifest = ensure_corpus(SyntheticConfig(**TINY_SYNTHETIC))
    with open(manifest) as f:
        paths = [line.split(",")[0] for line in f.read().splitlines()[1:]]
    waves = [load_audio(os.path.join(os.path.dirname(manifest), p), 8000)[0][:16000] for p in paths]
    waves = torch.from_numpy(np.stack(waves).astype(np.float32))  # (21, 16000)
    config = SimclrConfig(epochs=30, batch_size=7, width=8, crop_seconds=1.0, lr=3e-3)
    history = SimclrFeatures(config, 8000, seed).pretrain(waves, list(range(len(waves))))
    last = np.mean(history[-5:])
    assert last < np.mean(history[:3]) - 0.25, history
    assert last < np.log(2 * 7 - 1) - 0.3, history
