"""Experiment scripts: each ``main([... '--tiny' ...])`` runs its suite through the sweep machinery; the shared
command line resolves data, backbones, output folders and errors the way the help says."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from reprogram.experiment import suite
from reprogram.experiment.catalogue import ABLATIONS, IMAGE_SYSTEMS
from reprogram.experiment.results import read_results

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
TINY = ["--tiny", "--seeds", "1", "--jobs", "0"]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("name", "only", "expected"),
    [
        ("image", "pad+flm,lowrank", [("program", "tiny:vit", "flm"), ("program", "tiny:vit", "linear")]),
        ("video", "video_repeat+linear", [("program", "tiny:r3d", "linear")]),
        ("speech", "wave_additive,ia3,weighted_probe,mfcc", [("ia3", "tiny:whisper", None), ("mfcc", None, None),
         ("program", "tiny:whisper", "feature_linear"), ("weighted_probe", "tiny:whisper", None)]),
        ("compare", "finetune,random_forest", [("finetune", "tiny:whisper", None), ("mfcc", None, None)]),
    ],
)
def test_experiment_scripts_tiny(tmp_path, name, only, expected):
    out = tmp_path / name
    assert _script(name).main([*TINY, "--no-figures", "--only", only, "--out", str(out)]) == 0
    runs = sorted(
        ((r["method"], r["backbone"], r["config"]["method"]["options"].get("mapper")) for r in read_results(out)),
        key=str,
    )
    assert runs == sorted(expected, key=str)
    assert all(r["config"]["name"] == name for r in read_results(out))
    assert (out / "summary.md").is_file() and (out / "sweep.txt").is_file()


def test_budget_ablation_tiny_draws_the_curve(tmp_path):
    out = tmp_path / "ablation"
    assert _script("budget_ablation").main([*TINY, "--axes", "lora_rank", "--out", str(out)]) == 0
    results = read_results(out)
    assert sorted(r["budget"] for r in results) == list(ABLATIONS["lora_rank"].tiny_budgets)
    assert len({r["params"]["trainable"] for r in results}) == 2  # rank 2 trains more than rank 1
    assert all(r["config"]["output"]["tags"] == {"axis": "LoRA rank"} for r in results)
    curve = out / "figures" / "budget_ablation_call_type.png"
    assert curve.stat().st_size > 0
    with pytest.raises(SystemExit):
        _script("budget_ablation").main([*TINY, "--axes", "pad_widht", "--out", str(out)])


def _args(argv: list[str], roles=("image", "video", "speech")) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    suite.add_arguments(parser, "x", roles)
    return parser.parse_args(argv)


def test_output_folder_never_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("REPROGRAM_OUT", str(tmp_path / "env"))
    assert suite.out_dir("demo", _args([])) == tmp_path / "env" / "demo"
    assert suite.out_dir("demo", _args(["--tiny"])) == tmp_path / "env" / "demo-tiny"
    assert suite.out_dir("demo", _args(["--out", str(tmp_path / "mine")])) == tmp_path / "mine"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "manifest.csv").write_text("path,label\n")
    data = _args(["--data", str(tmp_path / "site" / "manifest.csv")])
    assert suite.out_dir("demo", data) == tmp_path / "env" / "demo-site-manifest"
    monkeypatch.delenv("REPROGRAM_OUT")
    assert suite.out_dir("demo", _args([])) == Path.home() / "gibbon-reprogram" / "demo"


def test_sweep_spec_resolves_data_backbones_and_overrides(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,recorder\n")
    args = _args(["--data", str(manifest), "--backbone", "image=timm:resnet50.a1_in1k", "--backbone",
                  "image=tiny:vit", "--seeds", "3", "--set", "training.epochs=2"])
    spec = suite.sweep_spec("x", IMAGE_SYSTEMS[:1] + [suite.System("mfcc", suite.NO_ROLE)], args)
    assert spec["set"]["data.path"] == str(manifest.resolve())
    assert spec["set"]["task.label_column"] == "label" and spec["set"]["task.group_column"] == "recorder"
    assert spec["set"]["split.kind"] == "grouped" and spec["folds"] == [0]
    assert spec["set"]["training.epochs"] == "2" and spec["seeds"] == [0, 1, 2]
    assert spec["methods"][0]["set"]["training.epochs"] == "2"  # --set beats the system's own settings
    assert spec["methods"][0]["set"]["training.lr"] == 0.01
    assert spec["methods"][0]["backbones"] == ["timm:resnet50.a1_in1k", "tiny:vit"]
    assert "backbones" not in spec["methods"][1]

    ungrouped = suite.sweep_spec("x", IMAGE_SYSTEMS[:1], _args(["--group-column", "none", "--folds", "all"]))
    assert ungrouped["set"]["split.kind"] == "kfold" and ungrouped["set"]["task.group_column"] is None
    assert ungrouped["set"]["task.label_column"] == "call_type" and ungrouped["folds"] == "all"


@pytest.mark.parametrize(
    ("argv", "error", "match"),
    [
        (["--data", "/nonexistent/manifest.csv"], FileNotFoundError, "manifest"),
        (["--backbone", "audio=vggish"], ValueError, "unknown role 'audio'"),
        (["--backbone", "vggish"], ValueError, "ROLE=NAME"),
        (["--only", "nothing-like-this"], ValueError, "matches no system"),
        (["--seeds", "0"], ValueError, "at least 1 seed"),
        (["--set", "training.epochs"], ValueError, "KEY=VALUE"),
    ],
)
def test_command_line_errors_name_the_fix(argv, error, match):
    with pytest.raises(error, match=match):
        suite.sweep_spec("x", IMAGE_SYSTEMS + [suite.System("lora", "speech")], _args(argv))


def test_suite_cache_options_reach_every_run(tmp_path):
    """``--cache-dir`` puts the decoded clips and features there; ``--no-cache`` writes nothing to any cache;
    ``--no-prefix-cache`` reaches the runs (recorded in result.json) through the sweep's worker processes."""
    off, on = tmp_path / "off", tmp_path / "on"
    argv = [*TINY, "--no-figures", "--only", "mfcc,weighted_probe", "--set", "data.clip_seconds=4.0"]  # whole clips
    no_cache = ["--no-cache", "--no-prefix-cache", "--jobs", "1", "--cache-dir", str(off), "--out", str(tmp_path / "a")]
    assert _script("speech").main([*argv, *no_cache]) == 0
    assert not off.exists() or not any(off.rglob("*.npy"))
    assert _script("speech").main([*argv, "--cache-dir", str(on), "--out", str(tmp_path / "b")]) == 0
    assert any(on.rglob("*.npy"))
    results = {d: read_results(tmp_path / d) for d in "ab"}
    used = {d: {r["method"]: (r.get("prefix_cache") or {}).get("used") for r in rs} for d, rs in results.items()}
    assert used == {"a": {"mfcc": None, "weighted_probe": False}, "b": {"mfcc": None, "weighted_probe": True}}
    scores = [[r["metrics"]["test"]["balanced_accuracy"] for r in rs] for rs in results.values()]
    assert scores[0] == scores[1]
