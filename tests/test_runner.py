"""``reprogram run`` with a trainable method on a tiny backbone: files written, fitted mapper checkpointed,
a run whose result was lost resumes from its checkpoint to the same metrics."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from reprogram.experiment.config import load_config, run_id
from reprogram.experiment.results import result_path, run_dir
from reprogram.experiment.runner import main, run_experiment, summary

OVERRIDES = ["data.path=synthetic", "data.clip_seconds=0.5", "data.sample_rate=8000", "method.name=program",
             "method.budget=2", "method.options.transform=pad", "method.options.mapper=flm", "backbone.name=tiny:vit",
             "training.epochs=2", "training.batch_size=32", "training.lr=0.05"]


def test_program_run_files_and_resume(tmp_path):
    config = load_config(None, OVERRIDES)
    first = run_experiment(config, tmp_path)
    folder = run_dir(tmp_path, run_id(config))
    for name in ("result.json", "config.yaml", "trainable.safetensors", "program.safetensors"):
        assert (folder / name).is_file(), name
    latest = json.loads((folder / "checkpoint" / "latest.json").read_text())
    assert latest["epoch"] == 1 and len(first["training"]["history"]) == 2
    state = load_file(str(folder / "trainable.safetensors"))
    assert "mapper.assignment" in state and int(state["mapper.assignment"].min()) >= 0  # the fitted FLM mapping
    assert all(k.startswith(("transform.", "mapper.")) for k in state)  # trainable state only, no backbone weights
    assert first["params"]["trainable"] == first["params"]["components"]["program"] > 0
    assert first["label_mapping"]["kind"] == "FrequencyMapping" and len(first["label_mapping"]["targets"]) == 4
    assert first["modality"] == "image" and first["backbone"] == "tiny:vit"



class Killed(Exception):
    """Stands in for the process being killed."""


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """A run killed right after epoch 1 of 2 resumes from that checkpoint, trains epoch 2 and ends with the
    uninterrupted run's metrics and FLM assignment."""
    import reprogram.experiment.checkpoint as checkpoint_module

    config = load_config(None, OVERRIDES)
    whole = run_experiment(config, tmp_path / "whole", cache_dir=tmp_path / "cache")
    real = checkpoint_module.save_checkpoint

    def save_then_die(ckpt, epoch, *args, **kwargs):
        real(ckpt, epoch, *args, **kwargs)
        raise Killed(f"killed after epoch {epoch + 1}")

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", save_then_die)
    with pytest.raises(Killed, match="after epoch 1"):
        run_experiment(config, tmp_path / "cut", cache_dir=tmp_path / "cache")
    monkeypatch.setattr(checkpoint_module, "save_checkpoint", real)
    assert not result_path(tmp_path / "cut", run_id(config)).exists()
    resumed = run_experiment(config, tmp_path / "cut", cache_dir=tmp_path / "cache")
    assert resumed["training"]["resumed_from"] == 0 and whole["training"]["resumed_from"] is None
    assert resumed["training"]["epochs_run"] == whole["training"]["epochs_run"] == 2
    assert resumed["metrics"] == whole["metrics"]
    assert resumed["label_mapping"] == whole["label_mapping"]
    states = [load_file(str(run_dir(tmp_path / o, run_id(config)) / "trainable.safetensors")) for o in ("whole", "cut")]
    assert states[0]["mapper.assignment"].tolist() == states[1]["mapper.assignment"].tolist()
    for key in states[0]:
        assert states[0][key].equal(states[1][key]), key


def test_cli_run_with_overrides(tmp_path, capsys):
    args = [str(_write(tmp_path)), "--out", str(tmp_path), "--set", "method.name=mfcc", "--set", "method.budget=null",
            "--set", "method.options={}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "result:" in out and "trainable parameters" in out and "test balanced accuracy" in out
    result = json.loads(next(tmp_path.glob("runs/*/result.json")).read_text())
    del result["metrics"]["test"]  # a split without a test part: the line names val, not test
    assert "val balanced accuracy" in summary(result) and "test" not in summary(result)
    bad = tmp_path / "bad"
    with pytest.raises(FileNotFoundError):
        main([str(_write(tmp_path)), "--out", str(bad), "--set", "data.path=/nonexistent/manifest.csv"])
    assert not bad.exists()  # data are checked before the run folder and config.yaml are written


def _write(tmp_path):
    import yaml

    path = tmp_path / "exp.yaml"
    data = {}
    for item in OVERRIDES:
        key, value = item.split("=", 1)
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(data))
    return path


def _manifest(tmp_path, relabel: int | None = None, path_column: str = "path", broken: int | None = None):
    """The synthetic call-type corpus as a manifest in ``tmp_path`` (absolute audio paths); ``relabel`` flips
    one row's label to another class."""
    import csv

    from reprogram.data.synthetic import SyntheticConfig, ensure_corpus, task_manifest

    source = task_manifest(ensure_corpus(SyntheticConfig()), "call_type")
    with open(source, newline="") as f:
        rows = list(csv.DictReader(f))
    classes = sorted({r["call_type"] for r in rows})
    for r in rows:
        r[path_column] = str(source.parent / r.pop("path"))
    if broken is not None:
        rows[broken][path_column] = str(tmp_path / "missing.flac")
    if relabel is not None:
        old = rows[relabel]["call_type"]
        rows[relabel]["call_type"] = next(c for c in classes if c != old)
    path = tmp_path / "data" / "manifest.csv"
    path.parent.mkdir(exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


MFCC = ["data.clip_seconds=0.5", "method.name=mfcc", "method.budget=null", "method.options={}"]


def test_completed_run_is_not_reused_after_its_data_changed(tmp_path):
    config = load_config(None, MFCC + [f"data.path={_manifest(tmp_path)}"])
    first = run_experiment(config, tmp_path / "out", use_cache=False)
    assert set(first["data_fingerprint"]) == {"data"}
    assert run_experiment(config, tmp_path / "out", use_cache=False)["created"] == first["created"]  # skipped
    _manifest(tmp_path, relabel=0)  # same files and config, one label changed
    with pytest.raises(ValueError, match=rf"changed.*{run_id(config)}.*delete .*runs/{run_id(config)}.*another --out"):
        run_experiment(config, tmp_path / "out", use_cache=False)


def test_make_split_honours_logo_options_and_refuses_ungrouped_kfold_with_groups():
    from reprogram.experiment.config import ConfigError
    from reprogram.experiment.inputs import load_data, make_split

    def val_groups(*extra):  # the validation recorders of each of the 4 leave-one-recorder-out folds
        configs = [load_config(None, ["data.path=synthetic", "split.kind=logo", f"split.fold={f}", *extra])
                   for f in range(4)]
        table = load_data(configs[0].data.path, configs[0])
        return [make_split(table, c).meta["val"] for c in configs]

    base = val_groups()
    assert any(val_groups(f"split.seed={seed}") != base for seed in range(1, 6))  # the seed draws the val groups
    assert val_groups("split.val_fraction=0.5") != base  # about half of the remaining recorders validate
    config = load_config(None, ["data.path=synthetic", "split.kind=kfold"])
    with pytest.raises(ConfigError, match="group_kfold.*task.group_column=null"):
        make_split(load_data(config.data.path, config), config)
    ungrouped = load_config(None, ["data.path=synthetic", "split.kind=kfold", "task.group_column=null"])
    assert make_split(load_data(ungrouped.data.path, ungrouped), ungrouped).test


def test_runner_prompt_tuning_initialises_prompts_from_frames(tmp_path, monkeypatch):
    """The runner calls the method's prepare step on training clips (prompt init from frames, as the benchmark)."""
    import reprogram.methods.adapters as adapters

    seen = []
    real = adapters.init_prompts_from_frames
    monkeypatch.setattr(adapters, "init_prompts_from_frames", lambda *a, **k: seen.append(a[3]) or real(*a, **k))
    config = load_config(None, ["data.path=synthetic", "data.clip_seconds=0.25", "method.name=prompt",
                                "method.budget=2", "backbone.name=tiny:hubert", "training.epochs=1", "seed=3",
                                "training.batch_size=64"])
    run_experiment(config, tmp_path, use_cache=False)
    assert seen == [3]


def test_data_config_reaches_the_loader(tmp_path):
    """The fixes the loader's errors suggest (on_error=skip, path column, format) are expressible in the config."""
    from reprogram.experiment.config import ConfigError

    path = _manifest(tmp_path, path_column="file", broken=5)
    base = [*MFCC, f"data.path={path}", "data.path_column=file", "data.format=manifest"]
    with pytest.raises(FileNotFoundError, match="missing.flac"):
        run_experiment(load_config(None, base), tmp_path / "out", use_cache=False)
    assert not (tmp_path / "out").exists()  # nothing written for data that do not load
    result = run_experiment(load_config(None, [*base, "data.on_error=skip"]), tmp_path / "out", use_cache=False)
    assert [s[0] for s in result["data_report"]["skipped"]] == ["manifest.csv:7"]  # reported, in result.json too
    assert sum(result["split"]["sizes"].values()) == 119  # the one bad row of 120 dropped
    with pytest.raises(ConfigError, match="data.on_error"):
        load_config(None, ["data.on_error=ignore"])
    with pytest.raises(ConfigError, match="data.format"):
        load_config(None, ["data.format=csv"])


def test_sweep_refuses_parallel_jobs_under_torchrun(tmp_path, monkeypatch):
    from reprogram.experiment.sweep import run_sweep

    for key, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    spec = {"name": "s", "config": {"method": {"name": "mfcc"}}, "methods": [{"name": "mfcc"}], "seeds": [0]}
    with pytest.raises(ValueError, match="--jobs 1 under torchrun"):
        run_sweep(spec, tmp_path, jobs=2)
    assert not any(tmp_path.iterdir())


@pytest.mark.numerics
def test_torchrun_two_processes_write_one_result_equal_to_one_process(tmp_path):
    """`reprogram run` under torchrun (2 CPU ranks, gloo): rank 0 alone prints and writes, and the result equals
    the one-process run's (same global batch)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env.update(PYTHONPATH=os.pathsep.join([str(root), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    sets = [arg for item in OVERRIDES for arg in ("--set", item)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "reprogram.experiment.runner", str(_write(tmp_path)), "--out", str(tmp_path / "ddp"),
               "--cache-dir", str(tmp_path / "cache"), *sets]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("balanced accuracy") == 1  # rank 0 reports, once
    config = load_config(None, OVERRIDES)
    ddp = json.loads(result_path(tmp_path / "ddp", run_id(config)).read_text())
    one = run_experiment(config, tmp_path / "one", cache_dir=tmp_path / "cache")
    assert ddp["label_mapping"] == one["label_mapping"]
    for part, metrics in one["metrics"].items():
        for key in ("accuracy", "balanced_accuracy", "macro_f1"):
            assert ddp["metrics"][part][key] == pytest.approx(metrics[key], abs=1e-6), (part, key)
