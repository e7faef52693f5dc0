"""Every figure and table is written, non-empty, from result files the test writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from figures.cli import make_figures
from figures.report import digits_for
from figures.tables import table_rows, to_markdown
from reprogram.cli import main as cli_main
from reprogram.experiment.config import load_config, run_id, to_dict
from reprogram.experiment.results import SCHEMA_VERSION, environment, read_results, run_dir, write_result

CLASSES = ["duet", "female", "male", "noise"]


def _result(out, method, budget, backbone, modality, seed, fold, acc, options=None, mapping=None, extra=(),
            predictions=None, external=None):
    overrides = [f"method.name={method}", f"backbone.name={backbone}", f"seed={seed}", "split.kind=kfold",
                 f"split.fold={fold}", *extra] + ([f"method.budget={budget}"] if budget is not None else [])
    config = load_config(None, overrides + [f"method.options.{k}={v}" for k, v in (options or {}).items()])
    rng = np.random.default_rng(seed * 10 + fold)
    cm = np.diag(rng.integers(3, 8, 4)) + rng.integers(0, 2, (4, 4))
    recall = np.diag(cm) / cm.sum(1)
    metrics = {"accuracy": acc, "balanced_accuracy": acc, "macro_f1": acc - 0.02, "n": int(cm.sum()),
               "per_class_recall": dict(zip(CLASSES, recall.tolist(), strict=True)),
               "confusion_matrix": cm.tolist()}
    result = {
        "schema": SCHEMA_VERSION, "run_id": run_id(config), "config": to_dict(config), "method": method,
        "budget": budget, "backbone": backbone, "modality": modality, "task": "call_type", "seed": seed,
        "fold": fold, "classes": CLASSES, "params": {"trainable": 1000 * (budget or 1), "total": 10**6},
        "metrics": {"val": metrics, "test": metrics,
                    **({"external": {**metrics, "balanced_accuracy": external}} if external is not None else {})},
        "label_mapping": mapping, "wall_time_s": 1.0,
        "predictions": predictions,
        "peak_memory_mb": {"rss": 100.0, "cuda": None}, "environment": environment(),
    }
    write_result(out, result)
    return result


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures") / "results"
    mapping = {"kind": "LinearMapping", "targets": CLASSES, "sources": ["tench", "goldfish", "great white shark"],
               "source_index": [0, 1, 2], "matrix": np.random.default_rng(0).normal(size=(4, 3)).tolist()}
    for seed in (0, 1):
        for fold in (0, 1, 2):
            noise = 0.01 * (seed + fold)
            _result(out, "mfcc", None, "none", "features", seed, fold, 0.60 + noise)
            _result(out, "lora", 8, "offline:whisper_tiny_en", "speech", seed, fold, 0.75 + noise)
            for budget in (4, 8, 16):
                r = _result(out, "program", budget, "offline:efficientnet_lite0", "image", seed, fold,
                            0.55 + budget / 100 + noise, options={"transform": "pad"}, mapping=mapping)
                if seed == 0 and fold == 0:
                    canvas = np.random.default_rng(budget).random((3, 32, 32)).astype(np.float32)
                    program = canvas.copy()
                    program[:, :4] += 0.5
                    save_file({"wave": np.zeros(800, np.float32), "input_init": canvas, "input": program,
                               "inner_init": canvas[:, 4:-4, 4:-4].copy(), "inner": canvas[:, 4:-4, 4:-4].copy()},
                              str(run_dir(out, r["run_id"]) / "program.safetensors"))
            r = _result(out, "program", 2, "offline:whisper_tiny_en", "speech", seed, fold, 0.65 + noise,
                        options={"transform": "wave_embed"})
            if seed == 0 and fold == 0:
                wave = np.sin(np.arange(1600, dtype=np.float32) / 10)
                save_file({"wave": wave, "input_init": wave, "input": wave + 0.1},
                          str(run_dir(out, r["run_id"]) / "program.safetensors"))
    return out


def test_every_figure_is_written(results_dir, tmp_path, capsys):
    assert cli_main(["figures", str(results_dir), "--out", str(tmp_path / "figs")]) == 0
    paths = [Path(line) for line in capsys.readouterr().out.split()]
    names = {p.name for p in paths}
    for stem in ("accuracy_vs_params_call_type", "budget_ablation_call_type", "confusion_call_type_test"):
        assert {f"{stem}.pdf", f"{stem}.png"} <= names
    assert sum(n.startswith("label_mapping_") for n in names) == 2 * 3  # one per pad budget, pdf + png
    assert sum(n.startswith("program_") for n in names) == 2 * 4  # three image programs, one waveform program
    assert {"results.md", "results.tex"} <= names
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0, p
    md = (tmp_path / "figs" / "results.md").read_text()
    assert "mfcc (ref)" in md and "lora" in md and "[transform=pad]" in md and "[n/a]" in md and "| units |" in md
    assert "| setting |" not in md and "Reference: the MFCC baseline" in md
    tex = (tmp_path / "figs" / "results.tex").read_text()
    assert r"\toprule" in tex and r"\_" in tex


def test_table_statistics(results_dir, tmp_path):
    rows = table_rows(read_results(results_dir))["call_type"]
    lora = next(r for r in rows if r["method"] == "lora")
    # 2 seeds x 3 folds = 3 independent folds (seeds share a fold's test clips): too few for an interval
    assert lora["mean"] == pytest.approx(0.765) and lora["n_units"] == 3 and lora["n_runs"] == 6
    assert lora["delta"] == pytest.approx(0.15) and lora["lo"] is None and lora["p_wilcoxon"] is None
    mfcc = next(r for r in rows if r["method"] == "mfcc")
    assert mfcc["reference"] and mfcc["delta"] is None
    with pytest.raises(FileNotFoundError, match="no result files"):
        make_figures(tmp_path)


def test_settings_reference_and_runs_file(tmp_path, capsys):
    """Two learning rates of one system are two rows (with a setting column), never pooled as extra seeds; no MFCC
    means no paired column unless --reference names one; --runs-file restricts the table to one sweep's runs."""
    out = tmp_path / "res"
    whisper = "offline:whisper_tiny_en"
    sweep_a = [_result(out, "lora", 8, whisper, "speech", s, f, 0.7 + 0.01 * f, extra=["training.lr=0.001"])
               for s in (0, 1) for f in range(5)]
    sweep_b = [_result(out, "lora", 8, whisper, "speech", s, f, 0.6 + 0.01 * f, extra=["training.lr=0.1"])
               for s in (0, 1) for f in range(5)]
    sweep_b += [_result(out, "prompt", 4, whisper, "speech", s, f, 0.62 + 0.01 * f,
                        extra=["training.lr=0.1"]) for s in (0, 1) for f in range(5)]
    rows = table_rows(read_results(out))["call_type"]
    lora = sorted((r for r in rows if r["method"] == "lora"), key=lambda r: r["mean"])
    assert len(lora) == 2 and lora[0]["mean"] == pytest.approx(0.62) and lora[1]["mean"] == pytest.approx(0.72)
    assert all(r["n_units"] == 5 and r["n_runs"] == 10 and r["lo"] is not None for r in rows)
    assert not rows[0]["has_reference"] and "no reference system" in rows[0]["caption"]
    assert cli_main(["figures", str(out), "--out", str(tmp_path / "f1")]) == 0
    md = (tmp_path / "f1" / "results.md").read_text()
    assert "| setting |" in md and "Δ vs ref" not in md and "No reference system" in md
    assert cli_main(["figures", str(out), "--out", str(tmp_path / "f2"), "--reference", "method=prompt"]) == 0
    md = (tmp_path / "f2" / "results.md").read_text()
    assert "Δ vs ref" in md and "prompt (ref)" in md and "-0.020 [-0.020, -0.020]" in md  # lora lr 0.1 - prompt
    runs = tmp_path / "sweep.txt"
    runs.write_text("\n".join(r["run_id"] for r in sweep_a) + "\nnot-finished\n")
    with pytest.warns(UserWarning, match="1 run"):
        assert cli_main(["figures", str(out), "--out", str(tmp_path / "f3"), "--runs-file", str(runs)]) == 0
    md = (tmp_path / "f3" / "results.md").read_text()
    assert "| setting |" not in md and "prompt" not in md and "0.72 [" in md
    (tmp_path / "none.txt").write_text("zzz\n")
    with pytest.raises(FileNotFoundError, match="none of the 1 run ids"):
        make_figures(out, tmp_path / "f4", runs_file=tmp_path / "none.txt")


def test_single_split_interval_from_stored_predictions(tmp_path):
    """One fold, three seeds: the interval comes from a clip-level bootstrap of the stored predictions."""
    out = tmp_path / "res"
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, 80)
    for method, acc in (("mfcc", 0.6), ("lora", 0.8)):
        for seed in range(3):
            pred = np.where(rng.random(80) < acc, target, (target + 1) % 4)
            scores = np.eye(4)[pred]
            _result(out, method, None, "offline:whisper_tiny_en", "speech", seed, 0, 0.0,
                    predictions={"test": {"target": target.tolist(), "scores": scores.tolist()}})
    rows = table_rows(read_results(out))["call_type"]
    for r in rows:
        assert r["n_units"] == 1 and r["ci"] == "clips" and r["lo"] < r["mean"] < r["hi"]
    lora = next(r for r in rows if r["method"] == "lora")
    assert lora["delta"] > 0.1 and lora["p_bootstrap"] < 0.01 and lora["p_wilcoxon"] is None


def test_digits_follow_the_interval():
    assert digits_for(0.80, 0.90) == 2 and digits_for(0.5, 0.9) == 1 and digits_for(0.851, 0.859) == 3
    assert digits_for(None, None) == 2 and digits_for(0.7, 0.7) == 3


def test_external_test_set_is_its_own_column(tmp_path):
    """Runs scored on an external set: the table has an external column and its own paired difference against the
    reference (known here: lora - mfcc = 0.05 for every fold's models). The external clips are one unit scored by
    every fold's models, so without stored predictions there is no interval (n/a)."""
    out = tmp_path / "res"
    for seed in (0, 1):
        for fold in range(5):
            _result(out, "mfcc", None, "none", "features", seed, fold, 0.6 + 0.01 * fold, external=0.5 + 0.02 * fold)
            _result(out, "lora", 8, "offline:whisper_tiny_en", "speech", seed, fold, 0.8 + 0.01 * fold,
                    external=0.55 + 0.02 * fold)
    rows = table_rows(read_results(out))["call_type"]
    lora = next(r for r in rows if r["method"] == "lora")
    assert lora["mean"] == pytest.approx(0.82) and lora["ext_mean"] == pytest.approx(0.59)
    assert lora["ext_lo"] is None and lora["has_external"]
    assert lora["ext_delta"] == pytest.approx(0.05) and lora["ext_delta_lo"] is None
    assert lora["delta"] == pytest.approx(0.2)
    md = to_markdown(table_rows(read_results(out)), "balanced_accuracy", "test")
    assert "| external |" in md and "| Δ ext vs ref |" in md and "| 0.59 [n/a] | +0.05 |" in md
    plain = to_markdown(table_rows([r for r in read_results(out)]), "balanced_accuracy", "test")
    assert plain == md
    assert cli_main(["figures", str(out), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "accuracy_vs_params_call_type_external.png").stat().st_size > 0
    assert "| external |" in (tmp_path / "figs" / "results.md").read_text()
    no_ext = tmp_path / "plain"
    _result(no_ext, "lora", 8, "offline:whisper_tiny_en", "speech", 0, 0, 0.8)
    assert "external" not in to_markdown(table_rows(read_results(no_ext)), "balanced_accuracy", "test").split("\n")[2]
