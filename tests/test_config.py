"""Experiment configs: YAML + typed --set overrides, key checking with suggestions, validation, run ids."""

from __future__ import annotations

import pytest
import yaml

from reprogram.experiment.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    run_id,
    save_config,
    valid_keys,
)


def test_overrides_are_coerced_to_the_field_types():
    cfg = load_config(None, ["training.lr=3e-4", "training.epochs=7", "training.grad_clip=null",
                             "task.detection=true", "task.positive_label=gibbon", "method.budget=8.0",
                             "data.synthetic.snr_db=3", "method.options.transform=pad", "seed=2"])
    assert cfg.training.lr == 3e-4 and isinstance(cfg.training.lr, float)
    assert cfg.training.epochs == 7 and cfg.training.grad_clip is None
    assert cfg.task.detection is True and cfg.task.positive_label == "gibbon"
    assert cfg.method.budget == 8 and isinstance(cfg.method.budget, int)
    assert load_config(None, ["method.budget=0.5"]).method.budget == 0.5
    assert cfg.data.synthetic == {"snr_db": 3} and cfg.method.options == {"transform": "pad"}
    assert cfg.seed == 2


@pytest.mark.parametrize(
    ("override", "named", "suggested"),
    [("training.lrr=1", "training.lrr", "training.lr"), ("trainig.lr=1", "trainig", "training"),
     ("method.bugdet=3", "method.bugdet", "method.budget")],
)
def test_unknown_key_names_it_suggests_and_lists(override, named, suggested):
    with pytest.raises(ValueError) as err:
        load_config(None, [override])
    msg = str(err.value)
    assert repr(named) in msg and f"Did you mean {suggested!r}" in msg
    assert "training.epochs" in msg and "split.kind" in msg  # the valid keys are listed


def test_mistyped_values_and_yaml_sections(tmp_path):
    with pytest.raises(ValueError, match="training.epochs='abc'"):
        load_config(None, ["training.epochs=abc"])
    with pytest.raises(ValueError, match="training.lr"):
        load_config(None, ["training.lr=fast"])
    with pytest.raises(ValueError, match="no '='"):
        load_config(None, ["training.lr"])
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"trainng": {"lr": 0.1}}))
    with pytest.raises(ValueError, match="Did you mean 'training'") as err:
        load_config(path)
    assert str(path) in str(err.value)
    path.write_text(yaml.safe_dump({"training": {"epochs": [1, 2]}}))
    with pytest.raises(ValueError, match="training.epochs"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("overrides", "fix"),
    [(["split.kind=random"], "use one of"), (["task.detection=true"], "positive_label"),
     (["training.lr=-1"], "positive learning rate"), (["split.kind=kfold", "split.fold=5"], "0..4"),
     (["training.select_metric=roc_auc"], "detection"), (["training.patience=0"], "patience")],
)
def test_validation_says_the_fix(overrides, fix):
    with pytest.raises(ConfigError, match=fix):
        load_config(None, overrides)


def test_run_id_hashes_the_full_resolved_config(tmp_path):
    base = load_config(None)
    assert len(run_id(base)) == 12 and run_id(base) == run_id(ExperimentConfig())
    assert run_id(load_config(None, [f"training.lr={base.training.lr}"])) == run_id(base)  # a default, spelled out
    ids = {run_id(load_config(None, [o])) for o in ["training.lr=0.5", "seed=1", "split.fold=0", "data.clip_seconds=3",
                                                    "method.options.mapper=flm", "output.tags.run=a"]}
    assert run_id(base) in ids  # split.fold=0 is the default
    assert len(ids) == 6
    path = tmp_path / "resolved.yaml"
    cfg = load_config(None, ["training.lr=3e-4", "method.options.transform=pad"])
    save_config(cfg, path)
    assert run_id(load_config(path)) == run_id(cfg)


def test_dict_round_trip_and_keys():
    cfg = config_from_dict(apply_overrides({"method": {"name": "lora"}}, {"method.budget": 4}))
    assert cfg.method.name == "lora" and cfg.method.budget == 4
    keys = valid_keys()
    assert "training.lr" in keys and "data.synthetic" in keys and "seed" in keys


def test_example_configs_load_and_the_sweep_expands():
    from pathlib import Path

    from reprogram.experiment.sweep import expand, load_sweep

    folder = Path(__file__).resolve().parents[1] / "experiments" / "configs"
    modalities = {}
    for name in ("image", "video", "speech", "peft"):
        cfg = load_config(folder / f"{name}.yaml")
        modalities[name] = cfg.backbone.name
    assert modalities["image"] == "offline:efficientnet_lite0" and modalities["speech"] == "offline:whisper_tiny_en"
    configs = expand(load_sweep(folder / "sweep_example.yaml"))
    assert len({run_id(c) for c in configs}) == len(configs) == 10 * 2 * 3
    assert {c.method.name for c in configs} == {"program", "lora", "prompt", "linear_probe", "mfcc"}
